"""Inference speed and top-1 of every way to run the 120-breed model, on the same real dev photos, in one run.

    python benchmarks/serving_speed.py [--dev ../shared/data/stanford_dogs_dev] [--per-breed 2] [--seconds 3]

Model-only throughput (images already decoded and normalised) for torch eager at batch 1 and 32, ONNX Runtime
fp32, OpenVINO fp32 and ONNX Runtime static int8 (QDQ, calibrated on 64 train photos) at batch 1 and 16; then
end to end (file bytes → answer) for fastai's `learn.predict` and the `Predictor`. Ratios are against torch
eager at batch 1, measured in the same run (these machines are noisy). Top-1 of each on the same photos.
Stanford Dogs is drawn from ImageNet: top-1 here is optimistic. Writes benchmarks/results/serving_speed.json.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmark_io import argument_parser, photos_argument, write_results
from dog_breed_classifier.core import DEFAULT_ARCH, breed_vocab
from dog_breed_classifier.export import quantize_int8, write_serving_dir, zero_shot_trained_model
from dog_breed_classifier.images import model_batch
from dog_breed_classifier.inference import Predictor, available_backends, load_backend
from dog_breed_classifier.measure import Stopwatch, items_per_second, photo_files
from dog_breed_classifier.model import create_model, model_input_spec, serving_model


def top1(fn, batch: np.ndarray, targets: np.ndarray, bs: int = 16) -> float:
    preds = np.concatenate([np.asarray(fn(batch[i:i + bs])).argmax(1) for i in range(0, len(batch), bs)])
    return float((preds == targets).mean())


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    photos_argument(ap, "stanford_dogs_train", "--train")
    ap.add_argument("--per-breed", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    dev = args.dev.resolve()/"Images"
    if not dev.is_dir(): raise SystemExit(f"no Stanford photos at {dev}")
    torch.set_num_threads(torch.get_num_threads())
    vocab = breed_vocab()
    model = create_model(classes="all").eval()
    index = {c: i for i, c in enumerate(model.classes)}
    files = photo_files(dev, per_breed=args.per_breed)
    targets = np.array([index[vocab.lookup(f.parent.name).name] for f in files])
    spec = model_input_spec(DEFAULT_ARCH)
    batch = model_batch(files, spec)
    rows = {}

    @torch.no_grad()
    def torch_eager(x): return model(torch.from_numpy(x)).numpy()
    rows["torch eager bs1"] = (items_per_second(torch_eager, batch, 1, args.seconds), top1(torch_eager, batch, targets))
    rows["torch eager bs32"] = (items_per_second(torch_eager, batch, 32, args.seconds), rows["torch eager bs1"][1])

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        write_serving_dir(d/"fp32", serving_model(model), zero_shot_trained_model(DEFAULT_ARCH))
        calib_files = sorted((args.train.resolve()/"Images").glob("*/*.jpg"))[::94][:64]
        calib = model_batch(calib_files, spec) if calib_files else batch[:64]
        quantize_int8(d/"fp32"/"model.onnx", d/"model.int8.onnx", calib)
        backends = {"onnxruntime fp32": load_backend(d/"fp32"/"model.onnx", "onnxruntime"),
                    "onnxruntime int8": load_backend(d/"model.int8.onnx", "onnxruntime")}
        if "openvino" in available_backends(): backends["openvino fp32"] = load_backend(d/"fp32"/"model.onnx", "openvino")
        for name, be in backends.items():
            def run(x, be=be): return be(x)[0]
            acc = top1(run, batch, targets)
            for bs in (1, 16): rows[f"{name} bs{bs}"] = (items_per_second(run, batch, bs, args.seconds), acc)

        # end to end: bytes in, answer out
        contents = [f.read_bytes() for f in files]
        predictor = Predictor.from_dir(d/"fp32")
        t = Stopwatch(); answers = []
        for c in contents: answers += predictor.predict([c], top_k=1)
        e2e = len(contents) / t.seconds
        rows[f"Predictor end to end bs1 ({predictor.backend.name})"] = (
            e2e, float(np.mean([a["top_k"][0]["breed"] == model.classes[y] for a, y in zip(answers, targets)])))

    # fastai learn.predict, one image at a time (its documented way to predict)
    from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, Learner, Normalize

    from dog_breed_classifier.augment import AlbumentationsTransform, eval_transforms
    tfm = AlbumentationsTransform(eval_transforms(spec.size, spec.crop_fraction), eval_transforms(spec.size, spec.crop_fraction))
    dls = DataBlock(blocks=(ImageBlock, CategoryBlock(vocab=model.classes, sort=False)), get_y=lambda f: vocab.lookup(f.parent.name).name,
                    item_tfms=[tfm], batch_tfms=[Normalize.from_stats([0.5] * 3, [0.5] * 3)]).dataloaders(files[:8], bs=8, num_workers=0)
    learn = Learner(dls, model)
    n = min(len(files), 60)
    learn.predict(files[0])
    t = Stopwatch()
    with learn.no_bar(), learn.no_logging(): preds = [learn.predict(f)[0] for f in files[:n]]
    rows["fastai learn.predict bs1"] = (n / t.seconds,
                                        float(np.mean([p == model.classes[y] for p, y in zip(preds, targets[:n])])))

    base = rows["torch eager bs1"][0]
    print(f"{len(files)} Stanford dev photos ({args.per_breed} per breed), {torch.get_num_threads()} torch threads; "
          f"ratios vs torch eager bs1 (optimistic top-1: ImageNet-derived photos)\n")
    print(f"{'runtime':45} {'img/s':>7} {'× torch':>8} {'top-1':>6}")
    for k, (ips, acc) in rows.items(): print(f"{k:45} {ips:7.1f} {ips / base:8.2f} {acc:6.3f}")
    write_results("serving_speed", {k: dict(images_per_second=round(v[0], 1), ratio_vs_torch_bs1=round(v[0] / base, 2), top1=v[1])
                               for k, v in rows.items()})


if __name__ == "__main__":
    main()
