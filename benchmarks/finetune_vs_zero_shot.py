"""Does fine-tuning beat the zero-shot model? Both scored on the same held-out test photos.

    python benchmarks/finetune_vs_zero_shot.py [--dev DIR] [--train DIR] [-S train.l2sp=0 ...]

Two setups, chosen by --train:
- without it: the real Stanford dev photos are prepared with the default 70/15/15 split (6 train, 2 valid, 2 test
  photos per breed) and the model is scored on that test split;
- with --train DIR (e.g. ../shared/data/stanford_dogs_train, 50 photos per breed): those photos are prepared
  (90/10 train/valid) and the model is scored on *all* the dev photos, which training never saw.
Training uses the params.yaml recipe on all 120 breeds, no offline variants; `-S` overrides apply (e.g.
`-S train.epochs=1` for head-only training, `-S train.l2sp=0` for plain fine-tuning). Prints trained vs zero-shot
and the difference; writes benchmarks/results/finetune[-NAME].json (--name).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmark_io import REPO, argument_parser, photos_argument, write_results
from dog_breed_classifier.architectures import zero_shot_temperature
from dog_breed_classifier.augment import prepare
from dog_breed_classifier.core import breed_vocab, classification_metrics, load_params
from dog_breed_classifier.evaluate import IMAGENET_CAVEAT, _summary, evaluate, predict_probs
from dog_breed_classifier.measure import Stopwatch, photo_files
from dog_breed_classifier.model import create_model
from dog_breed_classifier.train import load_trained_model, train


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    ap.add_argument("--train", type=Path, help="train on these Stanford photos and test on all of --dev")
    ap.add_argument("--name", default="", help="suffix of the results file")
    ap.add_argument("-S", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    args.dev, args.train = args.dev.resolve(), args.train and args.train.resolve()   # relative to where you run it
    if not (args.dev/"Images").is_dir(): raise SystemExit(f"no Stanford photos at {args.dev}")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root/"params.yaml").write_text((REPO/"params.yaml").read_text())
        source = args.train or args.dev
        split = ["data.valid_pct=0.1", "data.test_pct=0"] if args.train else []
        params = load_params(root/"params.yaml", ["data.source=stanford", f"data.path={source}", "augment.offline=[]",
                                                  "model.classes=all", "train.mode=local", *split, *args.overrides])
        prepare(params, root, progress=False)
        t0 = Stopwatch()
        trained_model = train(params, root, progress=True)
        seconds = t0.seconds
        if args.train:   # score on every dev photo
            model, _ = load_trained_model(root/"models")
            index = {c: i for i, c in enumerate(model.classes)}
            files = photo_files(args.dev)
            targets = np.array([index[breed_vocab().lookup(f.parent.name).name] for f in files])
            tm = trained_model
            zero = create_model(tm.arch, tm.classes, tm.pretrained)
            probs = predict_probs(model, files, tm.spec, tm.calibration.temperature)
            trained = classification_metrics(probs, targets, model.classes)
            zero_probs = predict_probs(zero, files, tm.spec, zero_shot_temperature(tm.arch))
            zero_shot = classification_metrics(zero_probs, targets, model.classes)
            metrics = dict(model=_summary(trained), zero_shot=_summary(zero_shot),
                           gain_top1=round(trained["top1"] - zero_shot["top1"], 4), caveat=IMAGENET_CAVEAT)
        else: metrics = evaluate(params, root, progress=False)
    result = dict(setup=f"train on {source}, test on {'all of ' + str(args.dev) if args.train else 'its test split'}",
                  recipe=trained_model.params["train"], train_seconds=seconds, train_images_per_second=trained_model.train_images_per_second,
                  best_epoch=trained_model.best_epoch, kept_zero_shot=trained_model.zero_shot, valid_loss=trained_model.best_valid_loss,
                  zero_shot_valid_loss=trained_model.zero_shot_valid_loss, test=dict(trained=metrics["model"], zero_shot=metrics["zero_shot"]),
                  gain_top1=metrics["gain_top1"], caveat=metrics["caveat"])
    t, z = metrics["model"], metrics["zero_shot"]
    print(f"recipe: {', '.join(f'{k}={v}' for k, v in trained_model.params['train'].items() if k in ('epochs', 'freeze_epochs', 'lr', 'body_lr_ratio', 'l2sp'))}")
    print(f"trained   top-1 {t['top1']:.3f}  top-5 {t['top5']:.3f}  log loss {t['log_loss']:.4f}  ECE {t['ece']:.3f}  ({t['photos']} test photos)")
    print(f"zero-shot top-1 {z['top1']:.3f}  top-5 {z['top5']:.3f}  log loss {z['log_loss']:.4f}  ECE {z['ece']:.3f}")
    print(f"fine-tuning: {metrics['gain_top1'] * 100:+.1f} top-1 points, log loss {t['log_loss'] - z['log_loss']:+.4f}; "
          f"kept epoch {trained_model.best_epoch} (0 = zero-shot); training {seconds:.0f} s, {trained_model.train_images_per_second} img/s")
    print(metrics["caveat"])
    write_results(f"finetune{'-' + args.name if args.name else ''}", result)


if __name__ == "__main__":
    main()
