"""Does static int8 keep its accuracy, and does it pay? Per architecture, on the same photos, in one run.

    python benchmarks/int8_recipe.py [--dev DIR] [--train DIR] [--archs tf_efficientnet_lite2] [--calibration 64 256]

For each architecture's zero-shot model: fp32 on OpenVINO and ONNX Runtime, and int8 (QDQ, per-channel weights)
on ONNX Runtime calibrated on N Stanford *training* photos, two ways — everything quantised, and `export.quantize_int8`'s
recipe (the stem convolution and the heads left in float). Prints top-1 on the dev photos and model-only photos/s at
batch 32 for each. Writes benchmarks/results/int8_recipe.json. Stanford Dogs is drawn from ImageNet: top-1 is optimistic.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from architectures import labelled_photos

from benchmark_io import argument_parser, items_per_second, photos_argument, write_results
from dog_breed_classifier.core import DEFAULT_ARCH
from dog_breed_classifier.export import quantize_int8, zero_shot_serving_dir
from dog_breed_classifier.images import decode_image, model_input
from dog_breed_classifier.inference import Predictor, load_backend


def inputs(predictor: Predictor, files: list[Path]) -> np.ndarray:
    return np.stack([model_input(decode_image(f).image, predictor.size, predictor.mean, predictor.std, predictor.crop_fraction)
                     for f in files])


def top1(backend, batch: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.concatenate([backend(batch[i:i + 32])[0].argmax(1) for i in range(0, len(batch), 32)]) == targets))


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    photos_argument(ap, "stanford_dogs_train", "--train")
    ap.add_argument("--archs", nargs="+", default=[DEFAULT_ARCH])
    ap.add_argument("--calibration", nargs="+", type=int, default=[64, 256])
    args = ap.parse_args()
    dev_files, dev_breeds = labelled_photos(args.dev.resolve(), None)
    train_files, _ = labelled_photos(args.train.resolve(), 5)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for arch in args.archs:
            folder = zero_shot_serving_dir(Path(d)/arch, arch)
            predictor = Predictor.from_dir(folder, tta=False)
            index = {c: i for i, c in enumerate(predictor.classes)}
            targets = np.array([index[b] for b in dev_breeds])
            dev, calib_all = inputs(predictor, dev_files), inputs(predictor, train_files[::2])
            fp32 = {b: load_backend(folder/"model.onnx", b) for b in ("openvino", "onnxruntime")}
            row = dict(arch=arch, fp32_top1=top1(fp32["onnxruntime"], dev, targets),
                       photos_per_second={f"fp32 {b}": round(items_per_second(be, dev, 32, 3.0), 1) for b, be in fp32.items()}, int8={})
            for n in args.calibration:
                for recipe in ("all int8", "stem and heads in float"):
                    out = Path(d)/f"{arch}-{n}-{recipe.split()[0]}.onnx"
                    quantize_int8(folder/"model.onnx", out, calib_all[:n], keep_float=recipe != "all int8")
                    be = load_backend(out, "onnxruntime")
                    row["int8"][f"{recipe}, {n} photos"] = dict(top1=top1(be, dev, targets), photos_per_second=round(items_per_second(be, dev, 32, 3.0), 1))
            rows.append(row); print(row, flush=True)
    for r in rows:
        print(f"\n{r['arch']}: fp32 top-1 {r['fp32_top1']:.4f}; " + ", ".join(f"{k} {v}/s" for k, v in r["photos_per_second"].items()))
        for k, v in r["int8"].items(): print(f"  int8 {k:34} top-1 {v['top1']:.4f} ({v['top1'] - r['fp32_top1']:+.4f})  {v['photos_per_second']}/s")
    write_results("int8_recipe", rows)


if __name__ == "__main__":
    main()
