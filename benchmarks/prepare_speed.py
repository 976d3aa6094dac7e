"""Preparation speed and memory, measured in one run so the ratios are comparable on a noisy machine.

    python benchmarks/prepare_speed.py [--dev ../shared/data/stanford_dogs_dev] [--skip-dvc]

Prints a table and writes benchmarks/results/prepare.json:
- `prepare` photos/s and peak memory (main process, largest worker) on the synthetic sample and, when present, on
  the real Stanford dev photos (`stanford` source), with 1 and with 2 worker processes, with and without the
  offline augmentation;
- decode + statistics cost per photo, and what `Image.draft` saves on large JPEGs;
- wall time of a no-op `dvc repro` in a fresh copy of the repository.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# one preparation in a fresh process: its own timing and peak memory, free of what earlier runs left behind
from benchmark_io import REPO, argument_parser, photos_argument, write_results
from dog_breed_classifier.measure import Stopwatch, paired_timings

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from dog_breed_classifier.core import load_params
from dog_breed_classifier.augment import prepare
from dog_breed_classifier.measure import Stopwatch
root = Path(sys.argv[1]); overrides = sys.argv[2:]
params = load_params(root/"params.yaml", overrides)
t0 = Stopwatch()
report = prepare(params, root, progress=False)
seconds = t0.seconds
print(json.dumps(dict(seconds=seconds, found=report.summary["images"]["found"], used=report.summary["images"]["used"],
                      variants=report.summary["variants"],
                      peak_main_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      peak_worker_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)))
"""


def run_prepare(root: Path, *overrides: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), *overrides], capture_output=True, text=True,
                         env={**os.environ, "DO_NOT_TRACK": "1"}, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["photos_per_s"] = r["found"] / r["seconds"]
    return r


def per_photo_costs(folder: Path, n: int = 300) -> dict:
    "µs per photo for reading+decoding, statistics, and decoding a large JPEG with and without draft."
    from PIL import Image

    from dog_breed_classifier.images import decode_image, image_stats
    files = sorted(folder.rglob("*.jpg"))[:n]
    datas = [f.read_bytes() for f in files]
    t0 = Stopwatch(); imgs = [decode_image(d).image for d in datas]; decode = t0.seconds
    t0 = Stopwatch(); [image_stats(i) for i in imgs]; stats = t0.seconds
    big = imgs[0].resize((2400, 1800)); buf = io.BytesIO(); big.save(buf, "JPEG", quality=90); big_bytes = buf.getvalue()
    seconds = paired_timings({"full": lambda: decode_image(big_bytes),
                              "draft": lambda: decode_image(big_bytes, draft_size=256)}, rounds=10)
    full, draft = statistics.median(seconds["full"]), statistics.median(seconds["draft"])
    del Image
    return dict(photos=len(files), decode_us=1e6 * decode / len(files), stats_us=1e6 * stats / len(files),
                big_jpeg_full_ms=1e3 * full, big_jpeg_draft_ms=1e3 * draft, draft_speedup=full / draft)


def noop_dvc_repro() -> dict:
    "Seconds for `dvc repro` when nothing changed, in a fresh copy of the repository."
    with tempfile.TemporaryDirectory() as d:
        dest = Path(d)/"repo"
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split("\0")
        for f in filter(None, files):
            if (REPO/f).is_file(): (dest/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(REPO/f, dest/f)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], [*git, "commit", "-qm", "bench"]):
            subprocess.run(cmd, cwd=dest, check=True)
        t0 = Stopwatch(); subprocess.run(["dvc", "repro", "-q"], cwd=dest, check=True); first = t0.seconds
        times = []
        for _ in range(3):
            t0 = Stopwatch(); subprocess.run(["dvc", "repro", "-q"], cwd=dest, check=True); times.append(t0.seconds)
        return dict(first_repro_s=first, noop_repro_s=statistics.median(times))


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    ap.add_argument("--skip-dvc", action="store_true")
    args = ap.parse_args()
    args.dev = args.dev.resolve()
    results = dict(cpu_count=os.cpu_count())
    with tempfile.TemporaryDirectory() as d:
        root = Path(d); (root/"params.yaml").write_text("")
        run_prepare(root, "augment.offline=[]")       # draws the sample once, so no timed run pays for it
        runs = {}
        runs["sample, 1 worker, no augmentation"] = run_prepare(root, "data.workers=1", "augment.offline=[]")
        runs["sample, 2 workers, no augmentation"] = run_prepare(root, "data.workers=2", "augment.offline=[]")
        runs["sample, 2 workers, 2 variants"] = run_prepare(root, "data.workers=2")
        if (args.dev/"Images").is_dir():
            dev = ["data.source=stanford", f"data.path={args.dev}"]
            runs["stanford dev, 1 worker, no augmentation"] = run_prepare(root, *dev, "data.workers=1", "augment.offline=[]")
            runs["stanford dev, 2 workers, no augmentation"] = run_prepare(root, *dev, "data.workers=2", "augment.offline=[]")
            runs["stanford dev, 2 workers, 2 variants"] = run_prepare(root, *dev, "data.workers=2")
            results["per_photo"] = per_photo_costs(args.dev/"Images")
        results["prepare"] = runs
    if not args.skip_dvc: results["dvc"] = noop_dvc_repro()

    print(f"{'run':44} {'photos':>6} {'variants':>8} {'s':>6} {'photos/s':>9} {'main MB':>8} {'worker MB':>9}")
    for name, r in results["prepare"].items():
        print(f"{name:44} {r['found']:6d} {r['variants']:8d} {r['seconds']:6.2f} {r['photos_per_s']:9.0f} "
              f"{r['peak_main_mb']:8.0f} {r['peak_worker_mb']:9.0f}")
    p = results["prepare"]
    for src in ("sample", "stanford dev"):
        one, two = p.get(f"{src}, 1 worker, no augmentation"), p.get(f"{src}, 2 workers, no augmentation")
        if one and two: print(f"{src}: 2 workers vs 1 = {two['photos_per_s'] / one['photos_per_s']:.2f}× photos/s")
    if "per_photo" in results:
        c = results["per_photo"]
        print(f"per photo (224px Stanford JPEGs): decode {c['decode_us']:.0f} µs, statistics {c['stats_us']:.0f} µs; "
              f"2400×1800 JPEG: full decode {c['big_jpeg_full_ms']:.1f} ms, draft {c['big_jpeg_draft_ms']:.1f} ms "
              f"({c['draft_speedup']:.1f}× faster)")
    if "dvc" in results:
        print(f"dvc repro: first run {results['dvc']['first_repro_s']:.1f} s, no-op {results['dvc']['noop_repro_s']:.2f} s")
    write_results("prepare", results)


if __name__ == "__main__":
    main()
