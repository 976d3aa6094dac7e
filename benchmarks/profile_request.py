"""Profile the request path of a real server with py-spy: where `POST /predict` spends its time, every thread.

    python benchmarks/profile_request.py [--requests 400] [--concurrency 4] [--model-dir DIR] [--precision auto|fp32|int8] [--no-ui]

Starts `dog-breed serve` on 127.0.0.1 (the zero-shot model unless --model-dir; a fresh SQLite log; the demo mounted
unless --no-ui, as users run it), attaches `py-spy record` to it, sends --requests uploads (Stanford dev photos from
../shared when present, else drawn ones) from --concurrency client threads, and writes reports/profile/request.md
(the hot spots) and reports/profile/request.raw.txt (collapsed stacks; git-ignored). py-spy samples the server from
outside, so the event loop, the thread pool that runs the model and the runtime's own threads are all seen.
"""
from __future__ import annotations

import concurrent.futures as cf
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from api_throughput import photos  # noqa: E402
from hot_spots import hot_spots, markdown, py_spy  # noqa: E402

from benchmark_io import REPO, argument_parser
from dog_breed_classifier.core import cpu_kind
from dog_breed_classifier.measure import LocalServer, Stopwatch

OUT = REPO/"reports"/"profile"


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    ap.add_argument("--no-ui", action="store_true")
    args = ap.parse_args()
    data = photos(None)
    OUT.mkdir(parents=True, exist_ok=True)
    raw = OUT/"request.raw.txt"
    extra = ((["--model-dir", str(args.model_dir)] if args.model_dir else []) + (["--no-ui"] if args.no_ui else [])
             + ["--precision", args.precision])
    with tempfile.TemporaryDirectory() as d, LocalServer("--store-url", f"sqlite:///{d}/predictions.db", *extra, cwd=d, ready=True) as s:
        url, proc = s.url, s.proc
        card = httpx.get(url + "/model").json()
        client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=32))
        def post(i: int) -> float:
            t = Stopwatch()
            r = client.post(url + "/predict", files={"file": ("p.jpg", data[i % len(data)], "image/jpeg")})
            if r.status_code != 200: raise RuntimeError(r.text)
            return t.seconds * 1000
        for i in range(8): post(i)                        # warm-up, outside the profile
        spy = subprocess.Popen([py_spy(), "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "200",
                                "--output", str(raw), "--nonblocking"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.0)                                   # py-spy attaches
        t = Stopwatch()
        with cf.ThreadPoolExecutor(args.concurrency) as pool: lat = np.array(list(pool.map(post, range(args.requests))))
        seconds = t.seconds
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
        if not raw.is_file(): raise SystemExit(f"py-spy wrote nothing: {err.decode()[-2000:]}")
    spots = hot_spots(raw)
    text = markdown("POST /predict", spots, [
        f"`dog-breed serve` ({card['model_version']} on {card['runtime']['backend']}, {card['runtime']['precision']}; "
        f"{'no demo' if args.no_ui else 'demo mounted'}; {cpu_kind()}), "
        f"{args.requests} uploads of {len(data)} distinct photos from {args.concurrency} client threads: "
        f"{args.requests / seconds:.1f} req/s, p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms "
        "(under py-spy, 200 samples/s; idle threads not counted)."])
    (OUT/"request.md").write_text(text)
    print(text + f"→ {OUT/'request.md'}")


if __name__ == "__main__":
    main()
