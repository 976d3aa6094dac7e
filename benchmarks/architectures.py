"""Which architecture to serve and train: the zero-shot EfficientNet-Lite0/1/2 models, measured side by side in one run.

    python benchmarks/architectures.py [--dev DIR] [--archs tf_efficientnet_lite0 ...] [--seconds 6]
    python benchmarks/architectures.py --calibrate [--train DIR] [--per-breed 20]
    python benchmarks/architectures.py --model-dir models/serving [--dev DIR]

Default: for each architecture, on the Stanford dev photos (the test set): top-1, top-5, log loss and ECE without
and with the temperature its zero-shot model carries, the same with mirror-image test-time augmentation (TTA), the
Predictor's speed end to end (file bytes → answers, batch 32, statistics included) on OpenVINO and ONNX Runtime
with TTA off and on, torch end to end on the same photos (decode + crop + model) at torch's best setting on this
machine (`precision_speed.sweep`: batch 1/4/8/32, NCHW and channels_last, eager and torch.compile, model only) and
the ratio between them, and the ONNX file's size. Writes benchmarks/results/architectures.json.

--model-dir: the same table for a trained serving folder, beside the zero-shot model of its architecture (the
temperature each carries, the card's TTA setting ignored: TTA is measured separately).

--calibrate: the per-architecture constants of `architectures.ARCHITECTURES`, measured on Stanford *training*
photos (never the dev/test photos): the temperature minimising log loss, and the lowest P(dog) threshold (steps
of 0.05) that catches every generated dog-free image (flat colours, noise, textures, scrambled photos…) while
calling at most 0.5 % of those dogs "no dog" (if none does, the highest within that 0.5 %).
Stanford Dogs is drawn from ImageNet, which the weights were trained on: accuracies here are optimistic.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from precision_speed import best, sweep, torch_settings

from benchmark_io import argument_parser, photos_argument, write_results
from dog_breed_classifier.architectures import ARCHITECTURES
from dog_breed_classifier.core import breed_vocab, classification_metrics
from dog_breed_classifier.embeddings import fit_temperature, scaled_log_loss
from dog_breed_classifier.export import build_zero_shot_serving_dir
from dog_breed_classifier.images import model_batch
from dog_breed_classifier.inference import Predictor, available_backends, softmax
from dog_breed_classifier.measure import items_per_second, photo_files
from dog_breed_classifier.model import create_model, model_input_spec, serving_model
from dog_breed_classifier.non_dogs import synthetic_non_dogs

MAX_REJECTED_DOGS = 0.005   # a real dog called "no dog" costs more than a blank wall called a breed


def labelled_photos(folder: Path, per_breed: int | None) -> tuple[list[Path], list[str]]:
    "Photos of `folder`/Images and their breed names, `per_breed` per breed (None: all)."
    vocab = breed_vocab()
    files = photo_files(folder, per_breed=per_breed)
    return files, [vocab.lookup(f.parent.name).name for f in files]


def raw_outputs(predictor: Predictor, images: list, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    "(logits, P(dog)) of the predictor's graph, before temperature, for decoded PIL images."
    batch = model_batch(images, predictor.spec)
    if mirrored: batch = np.ascontiguousarray(batch[..., ::-1])
    outs = [predictor.backend(batch[i:i + 32]) for i in range(0, len(batch), 32)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[2] for o in outs])


def scores(logits: np.ndarray, targets: np.ndarray, classes: list[str], temperature: float) -> dict:
    m = classification_metrics(softmax(logits / temperature), targets, classes)
    return {k: round(m[k], 4) for k in ("top1", "top5", "log_loss", "ece")}


def torch_best_end_to_end(arch: str, contents: list[bytes], seconds: float) -> tuple[float, str]:
    """Photos per second, bytes → probabilities, of the same architecture in torch at its best setting here — found
    model only by `precision_speed.sweep` (batch 1/4/8/32, NCHW and channels_last, eager and torch.compile) — and
    that setting, in words."""
    serving, spec = serving_model(create_model(arch, "all", "package"), arch), model_input_spec(arch)
    calls = torch_settings(serving, compile=True)
    speed, _ = sweep(calls, model_batch(contents[:64], spec), max(1.0, seconds / 3))
    name, batch = best(speed, "torch")
    run = lambda chunk: torch.softmax(calls[name](model_batch(chunk, spec)), 1).numpy()
    return items_per_second(run, contents, batch, seconds), f"{name}, batch {batch}"


def measure(model_dir: Path, files, breeds, seconds: float) -> dict:
    "Accuracy, calibration and speed of the serving folder `model_dir` on the dev photos."
    predictor = Predictor.from_dir(model_dir, tta=False, precision="fp32")   # int8 has its own benchmark
    arch = predictor.card.arch
    index = {c: i for i, c in enumerate(predictor.classes)}
    targets = np.array([index[b] for b in breeds])
    images = [predictor.decode(f).image for f in files]
    logits, _ = raw_outputs(predictor, images)
    tta_logits = (logits + raw_outputs(predictor, images, mirrored=True)[0]) / 2
    t = predictor.card.calibration.temperature
    row = dict(arch=arch + ("" if predictor.card.zero_shot else " (trained)"), input=predictor.card.input.size, crop_fraction=predictor.spec.crop_fraction, temperature=t,
               raw=scores(logits, targets, predictor.classes, 1.0), calibrated=scores(logits, targets, predictor.classes, t),
               tta_calibrated=scores(tta_logits, targets, predictor.classes, t),
               onnx_mb=round((model_dir/"model.onnx").stat().st_size / 1e6, 1), photos_per_second={})
    contents = [f.read_bytes() for f in files[::max(1, len(files) // 256)]]
    for backend in available_backends():
        for tta in (False, True):
            p = Predictor.from_dir(model_dir, backend=backend, batch_size=32, tta=tta, precision="fp32")
            row["photos_per_second"][f"{backend}{' tta' if tta else ''}"] = round(items_per_second(p.predict, contents, 32, seconds), 1)
    torch_rate, row["torch_best_setting"] = torch_best_end_to_end(arch, contents, seconds)
    row["photos_per_second"]["torch best"] = round(torch_rate, 1)
    fastest = max(v for k, v in row["photos_per_second"].items() if "tta" not in k and k != "torch best")
    row["speedup_vs_torch_best"] = round(fastest / torch_rate, 2)
    return row


def calibrate(arch: str, folder: Path, files, breeds) -> dict:
    "The zero-shot temperature and no-dog threshold of `arch`, from training photos."
    predictor = Predictor.from_dir(build_zero_shot_serving_dir(folder/arch, arch), tta=False)
    index = {c: i for i, c in enumerate(predictor.classes)}
    targets = np.array([index[b] for b in breeds])
    logits, dog = raw_outputs(predictor, [predictor.decode(f).image for f in files])
    _, non_dog = raw_outputs(predictor, [im for kind in synthetic_non_dogs(np.random.default_rng(0)).values() for im in kind])
    t = fit_temperature(logits, targets)
    steps = np.round(np.arange(0.05, 0.96, 0.05), 2)
    allowed = [s for s in steps if (dog < s).mean() <= MAX_REJECTED_DOGS] or [0.05]
    threshold = float(min([s for s in allowed if (non_dog < s).all()], default=max(allowed)))
    return dict(temperature=t, no_dog_threshold=threshold, photos=len(files),
                log_loss=round(scaled_log_loss(logits, targets), 4), log_loss_calibrated=round(scaled_log_loss(logits, targets, t), 4),
                dogs_rejected=round(float((dog < threshold).mean()), 4), non_dogs_caught=round(float((non_dog < threshold).mean()), 4))


def print_table(rows: list[dict]):
    print(f"\n{'arch':32} {'input':>5} {'T':>5} {'top-1':>6} {'top-5':>6} {'logloss':>8} {'→ cal.':>7} {'ECE':>6} {'→ cal.':>7}"
          f" {'TTA top-1':>9} {'OV/s':>6} {'ORT/s':>6} {'OV+TTA/s':>8} {'torch/s':>7} {'×torch':>6} {'MB':>5}  torch's best")
    for r in rows:
        s = r["photos_per_second"]
        print(f"{r['arch']:32} {r['input']:5d} {r['temperature']:5.2f} {r['raw']['top1']:6.3f} {r['raw']['top5']:6.3f} "
              f"{r['raw']['log_loss']:8.3f} {r['calibrated']['log_loss']:7.3f} {r['raw']['ece']:6.3f} {r['calibrated']['ece']:7.3f} "
              f"{r['tta_calibrated']['top1']:9.3f} {s.get('openvino', 0):6.1f} {s.get('onnxruntime', 0):6.1f} "
              f"{s.get('openvino tta', 0):8.1f} {s['torch best']:7.1f} {r['speedup_vs_torch_best']:6.2f} {r['onnx_mb']:5.1f}  "
              f"{r['torch_best_setting']}")


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    photos_argument(ap, "stanford_dogs_train", "--train")
    ap.add_argument("--archs", nargs="+", default=list(ARCHITECTURES))
    ap.add_argument("--calibrate", action="store_true", help="measure the zero-shot constants on the training photos")
    ap.add_argument("--model-dir", type=Path, help="a trained serving folder to measure beside its zero-shot model")
    ap.add_argument("--per-breed", type=int, default=None, help="photos per breed (default: all dev; 20 training)")
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds per speed measurement")
    args = ap.parse_args()
    folder = (args.train if args.calibrate else args.dev).resolve()
    if not (folder/"Images").is_dir(): raise SystemExit(f"no Stanford photos at {folder}/Images")
    files, breeds = labelled_photos(folder, args.per_breed or (20 if args.calibrate else None))
    print(f"{len(files)} photos from {folder}; {torch.get_num_threads()} torch threads", flush=True)
    with tempfile.TemporaryDirectory() as d:
        if args.calibrate:
            found = {a: calibrate(a, Path(d), files, breeds) for a in args.archs}
            print("\nfor architectures.ARCHITECTURES (zero_shot_temperature, no_dog_threshold):")
            for a, c in found.items(): print(f'    {a}: {c["temperature"]}, {c["no_dog_threshold"]}  # {c}')
            write_results("architectures_calibration", found)
            return
        folders = [build_zero_shot_serving_dir(Path(d)/a, a) for a in args.archs]
        if args.model_dir:
            arch = Predictor.from_dir(args.model_dir).card.arch
            folders = [args.model_dir.resolve(), build_zero_shot_serving_dir(Path(d)/arch, arch)]
        rows = []
        for folder in folders:
            rows.append(measure(folder, files, breeds, args.seconds)); print(rows[-1], flush=True)
    print_table(rows)
    write_results("architectures" + ("-trained" if args.model_dir else ""), dict(photos=len(files), rows=rows))


if __name__ == "__main__":
    main()
