"""Load test: a real server on 127.0.0.1, locust headless for a bounded number of requests, then the log checked.

    python benchmarks/load_test.py [--requests 1000] [--users 16] [--max-seconds 300] [--photos DIR] [--model-dir DIR]

Starts `dog-breed serve` (the zero-shot model unless --model-dir) with a fresh SQLite log, runs `locustfile.py`
with N users until --requests /predict requests have completed (or --max-seconds), and reports requests, failures,
p50/p95/p99, req/s, rows in the log (must equal the successful requests) and the server's resident memory.
Writes benchmarks/results/load_test.json and locust's CSVs beside it.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import psutil

from benchmark_io import REPO, argument_parser
from dog_breed_classifier.measure import LocalServer


def generated_photos(folder: Path, n: int = 40) -> Path:
    "`n` synthetic dog photos as JPEGs in `folder`."
    from dog_breed_classifier.data import draw_sample_dog
    folder.mkdir(parents=True, exist_ok=True)
    breeds = ["pug", "beagle", "chow", "papillon", "basenji"]
    for i in range(n):
        draw_sample_dog(breeds[i % len(breeds)], np.random.default_rng(i), (320, 256)).save(folder/f"{i}.jpg", quality=90)
    return folder


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--max-seconds", type=int, default=300)
    ap.add_argument("--photos", type=Path, help="a folder of JPEGs to upload (default: generated photos)")
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--results", type=Path, default=REPO/"benchmarks"/"results", help="where load_test.json goes")
    args = ap.parse_args()
    results = args.results; results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        extra = ["--model-dir", str(args.model_dir)] if args.model_dir else []
        with LocalServer("--store-url", f"sqlite:///{work}/predictions.db", *extra, cwd=work, ready=True) as s:
            url, proc = s.url, s.proc
            server = psutil.Process(proc.pid)
            rss_before = server.memory_info().rss
            summary_file = results/"locust_summary.json"
            summary_file.unlink(missing_ok=True)
            env = {**os.environ, "DOG_BREED_LOAD_REQUESTS": str(args.requests), "DOG_BREED_LOAD_SUMMARY": str(summary_file)}
            env["DOG_BREED_LOAD_PHOTOS"] = str(args.photos.resolve() if args.photos else generated_photos(work/"photos"))
            locust = [sys.executable, "-m", "locust", "-f", str(REPO/"locustfile.py"), "--headless", "-u", str(args.users),
                      "-r", str(args.users), "--run-time", f"{args.max_seconds}s", "--host", url,
                      "--only-summary", "--stop-timeout", "30", "--loglevel", "WARNING"]
            run = subprocess.run(locust, env=env, capture_output=True, text=True, timeout=args.max_seconds + 120)
            rss_after = server.memory_info().rss
        with sqlite3.connect(work/"predictions.db") as c:
            rows = c.execute("select count(*) from predictions").fetchone()[0]
            integrity = c.execute("pragma integrity_check").fetchone()[0]
    if not summary_file.is_file(): raise SystemExit(f"locust wrote no summary:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    p = json.loads(summary_file.read_text())
    ok = p["requests"] - p["failures"]
    summary = dict(**p, rows_stored=rows, rows_match_successes=rows == ok, sqlite_integrity=integrity, users=args.users,
                   server_rss_mb_before=round(rss_before / 2**20, 1), server_rss_mb_after=round(rss_after / 2**20, 1),
                   locust_exit=run.returncode)
    (results/"load_test.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    if run.returncode not in (0, 1) or p["requests"] < args.requests: print(run.stdout[-2000:], run.stderr[-3000:], file=sys.stderr)
    return 0 if summary["requests"] >= args.requests and summary["failures"] == 0 and summary["rows_match_successes"] else 1


if __name__ == "__main__":
    sys.exit(main())
