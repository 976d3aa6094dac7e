"""Zero-shot accuracy of the ImageNet-initialised 120-breed model on the real Stanford dev photos, through the
project's own code (decoder, evaluation crop, normalisation, head initialised from the ImageNet rows).

    python benchmarks/zero_shot_accuracy.py [--dev ../shared/data/stanford_dogs_dev] [--limit N]

Expect about 0.88 top-1: much lower means the normalisation or the synset mapping is wrong. Stanford Dogs is
drawn from ImageNet, so this is optimistic for new photos. Also prints the same model with ImageNet's usual
mean/std, to show what the normalisation carried with the weights is worth. Writes benchmarks/results/zero_shot.json.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from benchmark_io import argument_parser, photos_argument, write_results
from dog_breed_classifier.core import DEFAULT_ARCH, breed_vocab, classification_metrics
from dog_breed_classifier.evaluate import IMAGENET_CAVEAT, predict_probs
from dog_breed_classifier.measure import Stopwatch, photo_files
from dog_breed_classifier.model import create_model, model_input_spec


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    ap.add_argument("--limit", type=int, default=0, help="photos per breed (0 = all)")
    args = ap.parse_args()
    args.dev = args.dev.resolve()
    images = args.dev/"Images"
    if not images.is_dir(): raise SystemExit(f"no Stanford photos at {images}")
    vocab = breed_vocab()
    model = create_model(classes="all")
    index = {c: i for i, c in enumerate(model.classes)}
    files = photo_files(args.dev, per_breed=args.limit or None)
    targets = np.array([index[vocab.lookup(f.parent.name).name] for f in files])
    torch.set_num_threads(max(1, torch.get_num_threads()))
    spec = model_input_spec(DEFAULT_ARCH)
    with Stopwatch() as t0: probs = predict_probs(model, files, spec, progress=True)
    seconds = t0.stopped
    m = classification_metrics(probs, targets, model.classes)
    imagenet = replace(spec, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))   # not the weights' own
    wrong_norm = classification_metrics(predict_probs(model, files, imagenet, progress=True), targets, model.classes)
    result = dict(photos=len(files), top1=m["top1"], top5=m["top5"], log_loss=m["log_loss"], ece=m["ece"],
                  images_per_second=len(files) / seconds, imagenet_mean_std_top1=wrong_norm["top1"],
                  most_confused=m["most_confused"][:5], caveat=IMAGENET_CAVEAT)
    print(f"zero-shot on {len(files)} Stanford dev photos: top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}  "
          f"log loss {m['log_loss']:.3f}  ECE {m['ece']:.3f}  ({len(files) / seconds:.0f} photos/s, torch eager, decode included)")
    print(f"same model with ImageNet's mean/std instead of 0.5/0.5: top-1 {wrong_norm['top1']:.3f} "
          f"({(m['top1'] - wrong_norm['top1']) * 100:+.1f} points for the right normalisation)")
    print("most confused:", ", ".join(f"{c['actual']}→{c['predicted']} ×{c['count']}" for c in m["most_confused"][:5]))
    print(IMAGENET_CAVEAT)
    write_results("zero_shot", result)


if __name__ == "__main__":
    main()
