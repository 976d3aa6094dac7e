"""API throughput and latency vs the raw Predictor on the same photos, at concurrency 1, 4 and 16, in one run.

    python benchmarks/api_throughput.py [--requests 200] [--photos DIR] [--model-dir DIR] [--backend auto|openvino|onnxruntime]
                                        [--precision auto|fp32|int8]

Starts `dog-breed serve` on 127.0.0.1 (the zero-shot model unless --model-dir; a fresh SQLite log), sends
--requests uploads per concurrency level from that many client threads, and reports req/s and p50/p95/p99; then
calls `Predictor.predict` in-process on the same bytes from the same number of threads. The ratio API/raw is
what HTTP, multipart parsing, image statistics, the SQLite commit and metrics cost. Also the server's RSS.
Writes benchmarks/results/api_throughput.json.
"""
from __future__ import annotations

import concurrent.futures as cf
import sqlite3
import tempfile
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmark_io import REPO, argument_parser, write_results
from dog_breed_classifier.core import cpu_kind, stanford_photos
from dog_breed_classifier.inference import Predictor  # noqa: E402
from dog_breed_classifier.measure import LocalServer, Stopwatch, sample_photos  # noqa: E402


def concurrent_rate(fn, items, concurrency: int) -> tuple[float, np.ndarray]:
    "(items/s, per-item latencies in ms) of fn over items from `concurrency` threads."
    def one(x):
        t = Stopwatch(); fn(x); return t.seconds * 1000
    t = Stopwatch()
    with cf.ThreadPoolExecutor(concurrency) as pool: lat = np.array(list(pool.map(one, items)))
    return len(items) / t.seconds, lat


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--photos", type=Path)
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--backend", default="auto", choices=["auto", "openvino", "onnxruntime"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    args = ap.parse_args()
    data = sample_photos(120, args.photos or stanford_photos(root=REPO))
    items = [data[i % len(data)] for i in range(args.requests)]
    results = {}
    with tempfile.TemporaryDirectory() as d:
        extra = (["--model-dir", str(args.model_dir)] if args.model_dir else []) + ["--backend", args.backend, "--precision", args.precision]
        with LocalServer("--store-url", f"sqlite:///{d}/predictions.db", *extra, cwd=d, ready=True) as s:
            url, proc = s.url, s.proc
            server = psutil.Process(proc.pid)
            card = httpx.get(url + "/model").json()
            rss_idle = server.memory_info().rss
            client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=32))
            def post(b):
                r = client.post(url + "/predict", files={"file": ("p.jpg", b, "image/jpeg")})
                if r.status_code != 200: raise RuntimeError(r.text)
            post(items[0])
            for c in (1, 4, 16):
                rps, lat = concurrent_rate(post, items, c)
                results[f"api c={c}"] = dict(per_s=rps, p50_ms=np.percentile(lat, 50), p95_ms=np.percentile(lat, 95), p99_ms=np.percentile(lat, 99))
            rss_loaded = server.memory_info().rss
            with sqlite3.connect(Path(d)/"predictions.db") as db: rows = db.execute("select count(*) from predictions").fetchone()[0]
        from dog_breed_classifier.served_model import serving_model_dir
        predictor = Predictor.from_dir(args.model_dir or serving_model_dir(None, quiet=True)[0], backend=args.backend,
                                       precision=args.precision)
        assert predictor.model_version == card["model_version"]
        predictor.predict([items[0]])
        for c in (1, 4, 16):
            ips, lat = concurrent_rate(lambda b: predictor.predict([b]), items, c)
            results[f"raw Predictor c={c}"] = dict(per_s=ips, p50_ms=np.percentile(lat, 50), p95_ms=np.percentile(lat, 95), p99_ms=np.percentile(lat, 99))
    print(f"{cpu_kind()}; {card['model_version']} on {card['runtime']['backend']} ({card['runtime']['file']}, "
          f"{card['runtime']['precision']}); {len(data)} distinct photos, "
          f"{args.requests} requests per level\n")
    print(f"{'':22} {'/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}   API/raw")
    for c in (1, 4, 16):
        for kind in ("api", "raw Predictor"):
            r = results[f"{kind} c={c}"]
            ratio = results[f"api c={c}"]["per_s"] / results[f"raw Predictor c={c}"]["per_s"]
            print(f"{kind + f' c={c}':22} {r['per_s']:7.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f}"
                  + (f"   {ratio:.0%}" if kind == "api" else ""))
    print(f"\nrows logged {rows} (requests sent {3 * args.requests + 1}); server RSS idle {rss_idle / 2**20:.0f} MB, "
          f"after load {rss_loaded / 2**20:.0f} MB")
    write_results("api_throughput", dict(machine=cpu_kind(), model_version=card["model_version"], runtime=card["runtime"], rows_logged=rows,
                                         requests_sent=3 * args.requests + 1, rss_idle_mb=rss_idle / 2**20, rss_loaded_mb=rss_loaded / 2**20,
                                         levels={k: {m: round(float(v), 2) for m, v in r.items()} for k, r in results.items()}))


if __name__ == "__main__":
    main()
