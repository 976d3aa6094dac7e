"""The promotion gate on real photos: a model trained on the Stanford training photos against the zero-shot model,
and a model trained on the cartoon sample against it.

    python benchmarks/promotion_gate.py [--train ../shared/data/stanford_dogs_train] [--keep DIR]

In a fresh project (a temporary folder, or --keep DIR): prepares the 6 000 training photos (`data.source=folder`;
15 % held out as the test split the gate scores on), trains, evaluates and exports with params.yaml's defaults;
publishes the zero-shot model into an empty registry (against itself: the starting point users get), promotes the
trained model against it, then trains the five-breed cartoon sample in a second project and promotes that against
the trained one (refused), then rolls back. Prints each promotion's table and writes
benchmarks/results/promotion_gate.json (the figures of each model, the failed checks, seconds per step).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark_io import REPO, argument_parser, photos_argument, write_results
from dog_breed_classifier.measure import Stopwatch

CLI = [str(Path(sys.executable).parent/"dog-breed")]


def run(*args, cwd: Path, ok=(0,)) -> tuple[str, float]:
    "Run `dog-breed ARGS` in `cwd`; (stdout, seconds). Exits on an unexpected status."
    t = Stopwatch()
    res = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if res.returncode not in ok: raise SystemExit(f"dog-breed {' '.join(map(str, args))} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res.stdout, t.seconds


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap, "stanford_dogs_train", "--train")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder, removed)")
    args = ap.parse_args()
    if not (args.train/"Images").is_dir(): raise SystemExit(f"no Stanford photos under {args.train}/Images")
    work = args.keep or Path(tempfile.mkdtemp())
    real, cartoon = work/"real", work/"cartoon"
    for p in (real, cartoon): p.mkdir(parents=True, exist_ok=True); shutil.copy(REPO/"params.yaml", p/"params.yaml")
    for p in (real, cartoon): (p/"data"/"feedback").mkdir(parents=True, exist_ok=True)
    seconds, source = {}, ["-S", "data.source=folder", "-S", f"data.path={args.train.resolve()/'Images'}", "-S", "train.mode=local"]
    for step in ("prepare", "train", "evaluate", "export"):
        _, seconds[f"real_{step}"] = run(step, "-q", *source, cwd=real)
        print(f"real photos: {step} {seconds[f'real_{step}']:.0f} s", flush=True)
    for step in ("prepare", "train", "evaluate", "export"):
        _, seconds[f"cartoon_{step}"] = run(step, "-q", "-S", "train.mode=local", cwd=cartoon)
    data, registry = ["--data", real/"data"/"processed"], ["--registry", work/"registry"]
    from dog_breed_classifier.served_model import cached_zero_shot_serving_dir
    zero = cached_zero_shot_serving_dir()
    start, _ = run("promote", zero, *data, *registry, "--served", zero, cwd=real)
    trained, seconds["promote_trained"] = run("promote", real/"models"/"serving", *data, *registry, cwd=real, ok=(0, 1))
    print(trained)
    refused, seconds["promote_cartoon"] = run("promote", cartoon/"models"/"serving", *data, *registry, cwd=real, ok=(0, 1))
    print(refused)
    back, _ = run("rollback", *registry, cwd=real)
    models, _ = run("models", "--json", *registry, cwd=real)
    print(back, json.dumps(json.loads(models), indent=1))
    failed = lambda text: [line.split("|")[2].strip() for line in text.splitlines() if line.startswith("| ❌")]
    write_results("promotion_gate", dict(trained=dict(published="## Promotion: published" in trained, failed=failed(trained)),
                                         cartoon=dict(published="## Promotion: published" in refused, failed=failed(refused)),
                                         models=json.loads(models), after_rollback=back.strip(), seconds=seconds,
                                         tables=dict(trained=trained, cartoon=refused)))
    if not args.keep: shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
