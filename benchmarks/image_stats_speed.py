"""What the drift statistics cost per photo, next to what decoding the photo costs, measured in the same run.

    python benchmarks/image_stats_speed.py [--dev ../shared/data/stanford_dogs_dev] [--photos 300] [--generated 1600x1200]

For each photo (the Stanford dev photos when present, else — or with --generated WxH — generated JPEGs): decode
(`images.decode_image`), then `images.image_stats` on the decoded image, each timed best-of-3 per photo. Prints
µs/photo for both, the ratio, and the share each group of statistics takes; writes
benchmarks/results/image_stats.json.
"""
from __future__ import annotations

import io
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark_io import argument_parser, photos_argument, write_results
from dog_breed_classifier import images
from dog_breed_classifier.images import decode_image, image_stats
from dog_breed_classifier.measure import Stopwatch


def best_of(fn, repeat: int = 3) -> float:
    "Fastest of `repeat` calls, in microseconds."
    times = []
    for _ in range(repeat):
        t0 = Stopwatch(); fn(); times.append(t0.seconds)
    return min(times) * 1e6


def photo_bytes(dev: Path, n: int, generated: tuple[int, int] | None) -> list[bytes]:
    paths = sorted(p for p in dev.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n] if dev.is_dir() and not generated else []
    if paths: return [p.read_bytes() for p in paths]
    w, h = generated or (500, 375)
    rng, out = np.random.default_rng(0), []
    for _ in range(n):
        buf = io.BytesIO()   # smooth noise: compresses like a photo, unlike white noise
        small = Image.fromarray(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        small.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--generated", metavar="WxH", help="time generated JPEGs of this size instead of the dev photos")
    args = ap.parse_args()
    generated = tuple(int(v) for v in args.generated.lower().split("x")) if args.generated else None
    photos = photo_bytes(args.dev, args.photos, generated)
    decode_us, stats_us, parts = [], [], {"histogram": [], "detail": [], "colour": []}
    for data in photos:
        decode_us.append(best_of(lambda data=data: decode_image(data)))
        img = decode_image(data).image
        stats_us.append(best_of(lambda img=img: image_stats(img)))
        small = img.copy(); small.thumbnail((images.STATS_SIZE, images.STATS_SIZE), Image.BILINEAR, reducing_gap=2.0)
        grey = small.convert("L"); g, rgb = np.asarray(grey), np.asarray(small)
        parts["histogram"].append(best_of(lambda grey=grey: images._grey_histogram_stats(grey)))
        parts["detail"].append(best_of(lambda g=g: images._detail_stats(g)))
        parts["colour"].append(best_of(lambda rgb=rgb: images._colour_stats(rgb)))
    result = dict(photos=len(photos), source=f"generated {args.generated or '500x375'} JPEGs" if generated or not args.dev.is_dir() else str(args.dev),
                  decode_us_median=statistics.median(decode_us), image_stats_us_median=statistics.median(stats_us),
                  stats_over_decode=statistics.median(stats_us) / statistics.median(decode_us),
                  parts_us_median={k: statistics.median(v) for k, v in parts.items()})
    print(f"{len(photos)} photos ({result['source']})")
    print(f"decode_image      {result['decode_us_median']:8.0f} µs/photo (median)")
    print(f"image_stats       {result['image_stats_us_median']:8.0f} µs/photo (median) = "
          f"{result['stats_over_decode']:.2f} × decoding")
    for k, v in result["parts_us_median"].items(): print(f"  {k:15s} {v:8.0f} µs (on the {images.STATS_SIZE}-px copy)")
    write_results(f"image_stats{'_' + args.generated if generated else ''}", result, indent=2)


if __name__ == "__main__":
    main()
