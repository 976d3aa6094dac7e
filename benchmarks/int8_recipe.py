"""fp32 against int8, per architecture and per runtime, as `export` judges it — and end to end, in one run.

    python benchmarks/int8_recipe.py [--photos DIR] [--archs tf_efficientnet_lite0 tf_efficientnet_lite1 tf_efficientnet_lite2]
                                     [--model-dir models/serving] [--files 256] [--runs 3]

For each architecture the zero-shot model is built the way `dog-breed serve --calibration-photos DIR` builds it
(`export.build_zero_shot_serving_dir(photos=DIR)`): int8 for OpenVINO (NNCF) and for ONNX Runtime (static QDQ), each
calibrated on 128 Stanford *training* photos spread over the breeds, kept or dropped by export's paired rule on 600
other training photos, and reported on the 1 200 dev photos — top-1, log loss, ECE, the no-dog rule on generated
dog-free images, model-only photos/s at batch 32. `--model-dir` adds a trained serving folder as its export judged it (its own test photos). Then end to
end (photo files → answers, batch 32), fp32 against int8 on each runtime, in paired runs whose order alternates — an
int8 file export dropped is made again for this, so the cost of the dropped one shows too. DIR holds
stanford_dogs_train/ and stanford_dogs_dev/ (default: $DOG_BREED_PHOTOS, else ../shared/data). Says which CPU.
Writes benchmarks/results/int8_recipe.json.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmark_io import REPO, argument_parser, write_results
from dog_breed_classifier.core import SERVING_FILES, stanford_photos
from dog_breed_classifier.export import (
    build_zero_shot_serving_dir,
    quantize_int8,
    quantize_openvino_int8,
    zero_shot_photos,
)
from dog_breed_classifier.images import model_batch
from dog_breed_classifier.inference import Predictor
from dog_breed_classifier.measure import paired_timings, rates
from dog_breed_classifier.model_card import read_model_card

RUNTIMES = {"openvino": (quantize_openvino_int8, SERVING_FILES.int8_openvino),
            "onnxruntime": (quantize_int8, SERVING_FILES.int8_onnxruntime)}


def with_every_int8(folder: Path, out: Path, calibration: list[Path]) -> Path:
    "A copy of `folder` whose card names an int8 file for every runtime (made again where export dropped it)."
    shutil.copytree(folder, out)
    card = read_model_card(out)
    p = Predictor.from_dir(out, precision="fp32")
    batch = model_batch(calibration, p.spec)
    for runtime, (quantize, name) in RUNTIMES.items():
        if not (out/name).is_file(): quantize(out/SERVING_FILES.onnx, out/name, batch)
        setattr(card.files, f"int8_{runtime}", name)
    card.write(out)
    return out


def end_to_end(folder: Path, files: list[Path], runs: int) -> dict:
    "Photos per second, files → answers at batch 32, fp32 and int8 on each runtime; paired runs, medians."
    paths = {f"{r} {p}": Predictor.from_dir(folder, backend=r, precision=p, batch_size=32, tta=False)
             for r in RUNTIMES for p in ("fp32", "int8")}
    everything = lambda p: lambda: [p.predict(files[i:i + 32]) for i in range(0, len(files), 32)]
    seconds = paired_timings({k: everything(p) for k, p in paths.items()}, rounds=runs)
    return {k: round(v, 1) for k, v in rates(seconds, len(files)).items()}


def summary(folder: Path) -> dict:
    "What export decided, per runtime: the card's figures."
    card = read_model_card(folder)
    return dict(arch=card.arch, zero_shot=card.zero_shot, machine=card.int8.machine,
                **{r: getattr(card.int8, r).to_json() for r in RUNTIMES if getattr(card.int8, r)})


def print_row(row: dict):
    print(f"\n{row['arch']}{'' if row['zero_shot'] else ' (trained)'} — {row['machine']}")
    for r in RUNTIMES:
        i = row.get(r)
        if not i or "top1" not in i: print(f"  {r}: {i and i['reason']}"); continue
        print(f"  {r:11} top-1 {i['top1']['fp32']:.4f} → {i['top1']['int8']:.4f}  log loss {i['log_loss']['fp32']:.4f} → "
              f"{i['log_loss']['int8']:.4f}  ECE {i['ece']['fp32']:.3f} → {i['ece']['int8']:.3f}  no-dog "
              f"{i['no_dog_caught']['fp32']} → {i['no_dog_caught']['int8']}/{i['non_dog_images']}  model only "
              f"{i['images_per_second']['fp32']} → {i['images_per_second']['int8']}/s  {i['megabytes']['fp32']} → "
              f"{i['megabytes']['int8']} MB  end to end {row['end_to_end'][f'{r} fp32']} → {row['end_to_end'][f'{r} int8']}/s"
              f"  {'KEPT' if i['kept'] else 'dropped'} on {i.get('decided_on')}: {i['reason']}")


def main():
    ap = argument_parser(__doc__)
    found = stanford_photos("stanford_dogs_dev", REPO)
    ap.add_argument("--photos", type=Path, default=found.parent if found else REPO.parent/"shared"/"data")
    ap.add_argument("--archs", nargs="+", default=["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--files", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    photos = zero_shot_photos(args.photos)
    files = [f for f, _ in photos.test][::max(1, len(photos.test) // args.files)][:args.files]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        folders = [build_zero_shot_serving_dir(Path(d)/a, a, photos=args.photos) for a in args.archs]
        folders += [args.model_dir.resolve()] if args.model_dir else []
        for folder in folders:
            row = summary(folder)
            row["end_to_end"] = end_to_end(with_every_int8(folder, Path(d)/f"{folder.name}-all", photos.calibration), files, args.runs)
            rows.append(row); print_row(row)
    write_results("int8_recipe", rows)


if __name__ == "__main__":
    main()
