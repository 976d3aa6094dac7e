"""Profile the prepare stage with py-spy: where `dog-breed prepare` spends its time, its worker processes included.

    python benchmarks/profile_prepare.py [--photos-per-breed 60] [--source sample|stanford]

Draws the built-in sample (or takes the Stanford train photos in ../shared when --source stanford and they are there)
into a temporary project, runs `dog-breed prepare` under `py-spy record --subprocesses`, and writes
reports/profile/prepare.md (the hot spots) and reports/profile/prepare.raw.txt (collapsed stacks; git-ignored, open
it with speedscope or inferno). Prints the wall time of the same command without the profiler, run right before.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hot_spots import hot_spots, markdown, record  # noqa: E402

from benchmark_io import REPO, argument_parser
from dog_breed_classifier.core import stanford_photos
from dog_breed_classifier.measure import Stopwatch

OUT = REPO/"reports"/"profile"


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--photos-per-breed", type=int, default=60)
    ap.add_argument("--source", default="sample", choices=["sample", "stanford"])
    args = ap.parse_args()
    dog_breed = [sys.executable, "-m", "dog_breed_classifier.cli"]
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(REPO/"params.yaml", d)
        stanford = stanford_photos("stanford_dogs_train", REPO)
        if args.source == "stanford" and stanford:
            sets = ["-S", "data.source=stanford", "-S", f"data.path={stanford}"]
            what = f"Stanford train photos ({stanford})"
        else:
            sets = ["-S", f"data.sample.images_per_breed={args.photos_per_breed}"]
            subprocess.run([*dog_breed, "sample", "--quiet", *sets], cwd=d, check=True)
            what = f"the built-in sample, {args.photos_per_breed} photos per breed"
        prepare = [*dog_breed, "prepare", "--quiet", *sets]
        t = Stopwatch()
        subprocess.run([*prepare, "--out", f"{d}/plain"], cwd=d, check=True, capture_output=True)
        plain = t.seconds
        raw = OUT/"prepare.raw.txt"
        t = Stopwatch()
        res = record([*prepare, "--out", f"{d}/profiled"], raw, cwd=Path(d), subprocesses=True)
        profiled = t.seconds
        if res.returncode != 0: raise SystemExit(res.stderr[-3000:])
    spots = hot_spots(raw)
    text = markdown("prepare", spots, [f"`dog-breed prepare` on {what}: {plain:.1f} s without the profiler, "
                                       f"{profiled:.1f} s under py-spy (200 samples/s, worker processes included)."])
    (OUT/"prepare.md").write_text(text)
    print(text + f"→ {OUT/'prepare.md'}")


if __name__ == "__main__":
    main()
