"""Report the no-dog rule's trade-off on the dev photos: `dog_probability` on real dogs vs images without a dog.

A report on the test set, never a choice: each architecture's threshold is chosen on Stanford *training* photos by
`python benchmarks/architectures.py --calibrate` (into `architectures.ARCHITECTURES`); this shows what it costs.

    python benchmarks/no_dog_rule.py [--dev ../shared/data/stanford_dogs_dev] [--model-dir DIR]

Dogs: the 1 200 Stanford dev photos. Non-dogs: this machine has no photos of cats or cars, so the non-dog side is
generated — flat colours, gradients, noise, textures, stripes, geometric scenes, text on paper, sky-and-ground
landscapes, and the dev photos scrambled into 16×16 tiles (a photo's colours and textures with no dog shape).
For each threshold it prints the share of dogs wrongly rejected and the share of non-dogs caught, and writes
benchmarks/results/no_dog_rule.json. Default model: the 120-breed zero-shot model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmark_io import argument_parser, photos_argument, write_results
from dog_breed_classifier.images import decode_image, model_batch
from dog_breed_classifier.inference import Predictor
from dog_breed_classifier.measure import photo_files
from dog_breed_classifier.non_dogs import synthetic_non_dogs


def scrambled(img: Image.Image, rng: np.random.Generator, tile: int = 16) -> Image.Image:
    "The photo cut into tiles and shuffled: its colours and textures, no dog shape."
    arr = np.asarray(img.resize((224, 224)))
    tiles = [arr[y:y + tile, x:x + tile] for y in range(0, 224, tile) for x in range(0, 224, tile)]
    order = rng.permutation(len(tiles)); n = 224 // tile
    rows = [np.concatenate([tiles[order[r * n + c]] for c in range(n)], axis=1) for r in range(n)]
    return Image.fromarray(np.concatenate(rows, axis=0))


def dog_probabilities(predictor: Predictor, images: list) -> np.ndarray:
    batch = model_batch(images, predictor.spec)
    return predictor.run(batch)[2]


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    ap.add_argument("--model-dir", type=Path, help="a serving folder (default: the zero-shot model, built if needed)")
    args = ap.parse_args()
    images = args.dev.resolve()/"Images"
    if not images.is_dir(): raise SystemExit(f"no Stanford photos at {images}")
    if args.model_dir: model_dir = args.model_dir
    else:
        from dog_breed_classifier.export import build_zero_shot_serving_dir
        from dog_breed_classifier.served_model import zero_shot_cache_dir
        model_dir = build_zero_shot_serving_dir(zero_shot_cache_dir())
    predictor = Predictor.from_dir(model_dir)
    rng = np.random.default_rng(0)
    dogs = photo_files(images)
    p_dog = dog_probabilities(predictor, dogs)
    non = synthetic_non_dogs(rng)
    non["scrambled_dev_photo"] = [scrambled(decode_image(f).image, rng) for f in rng.choice(dogs, 160, replace=False)]
    p_non = {k: dog_probabilities(predictor, v) for k, v in non.items()}
    all_non = np.concatenate(list(p_non.values()))
    thresholds = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5]
    print(f"{predictor}\n{len(dogs)} dog photos, {len(all_non)} non-dog images "
          f"({', '.join(f'{k} {len(v)}' for k, v in non.items())})\n")
    print(f"{'threshold':>9}  {'dogs rejected':>13}  {'non-dogs caught':>15}  " + "  ".join(f"{k[:10]:>10}" for k in p_non))
    rows = []
    for t in thresholds:
        row = dict(threshold=t, dogs_rejected=float((p_dog < t).mean()), non_dogs_caught=float((all_non < t).mean()),
                   by_kind={k: float((v < t).mean()) for k, v in p_non.items()})
        rows.append(row)
        print(f"{t:>9}  {row['dogs_rejected']:>13.1%}  {row['non_dogs_caught']:>15.1%}  "
              + "  ".join(f"{v:>10.0%}" for v in row["by_kind"].values()))
    print(f"\nP(dog) on dogs: median {np.median(p_dog):.3f}, 1st percentile {np.percentile(p_dog, 1):.3f}; "
          f"on non-dogs: median {np.median(all_non):.3f}, 99th percentile {np.percentile(all_non, 99):.3f}")
    write_results("no_dog_rule", dict(model_version=predictor.model_version, dogs=len(dogs), non_dogs=len(all_non), rows=rows))


if __name__ == "__main__":
    main()
