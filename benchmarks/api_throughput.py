"""The API's throughput and latency against the `Predictor`'s own rate at its best batch size, on the same photos.

    python benchmarks/api_throughput.py [--requests 200] [--rounds 3] [--photos DIR] [--model-dir DIR]
                                        [--backend auto|openvino|onnxruntime] [--precision auto|fp32|int8]
                                        [--server-threads N]

Starts `dog-breed serve` on 127.0.0.1 (the zero-shot model unless --model-dir; a fresh SQLite log), and in each round
sends --requests uploads (one real photo each) from 1, 4 and 16 client threads, reporting req/s and p50/p95/p99 and
the CPU each request cost the server and the client (which shares its cores: prebuilt multipart bodies on keep-alive
connections, so it takes as little of them as it can);
then, back to back, calls `Predictor.predict` in-process on the same bytes at batch 1, 4, 8 and 32 and takes the
best. The ratio API / best batch is what HTTP, multipart parsing, the durable commit and the rest of the request
cost, once concurrent requests share the model (`answers.SharedBatches`). Figures are medians over the rounds.
Also the rows logged and the server's RSS. Writes benchmarks/results/api_throughput.json.
"""
from __future__ import annotations

import concurrent.futures as cf
import http.client
import secrets
import sqlite3
import tempfile
import threading
import urllib.parse
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


LEVELS, BATCHES = (1, 4, 16), (1, 4, 8, 32)


def multipart(photo: bytes) -> tuple[bytes, str]:
    "(body, content type) of a multipart upload of `photo` in the field `file`, as `curl -F file=@p.jpg` sends it."
    boundary = secrets.token_hex(16)
    assert boundary.encode() not in photo
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + photo + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Uploader:
    """POSTs prebuilt multipart bodies over one keep-alive HTTP/1.1 connection per thread (http.client): the client
    shares the server's cores, so it should cost them as little as it can (httpx builds each request anew)."""
    def __init__(self, url: str): self.url, self.local = urllib.parse.urlsplit(url), threading.local()

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if not hasattr(self.local, "conn"):
            self.local.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=120)
        self.local.conn.request("POST", path, body, {"Content-Type": content_type})
        r = self.local.conn.getresponse()
        return r.status, r.read()


def predictor_best(predictors: dict[int, Predictor], items: list[bytes]) -> tuple[int, float, float]:
    """(batch, photos/s, CPU ms a photo) of `Predictor.predict` at its fastest batch size over `items` (bytes → answers, in-process, all
    in one call: it decodes and prepares the next batch while the runtime runs one)."""
    rates, me = {}, psutil.Process()
    for b, predictor in predictors.items():
        t, cpu = Stopwatch(), sum(me.cpu_times()[:2])
        predictor.predict(items)
        rates[b] = len(items) / t.seconds, (sum(me.cpu_times()[:2]) - cpu) * 1000 / len(items)
    b, (rate, cpu_ms) = max(rates.items(), key=lambda kv: kv[1][0])
    return b, rate, cpu_ms


def level(post, items, c: int, server: psutil.Process) -> dict:
    "Requests/s, latency percentiles, and the CPU each request cost the server and the client (ms)."
    cpu = lambda p: sum(p.cpu_times()[:2])
    client, before = psutil.Process(), (cpu(server), cpu(psutil.Process()))
    rps, lat = concurrent_rate(post, items, c)
    server_ms, client_ms = ((cpu(p) - b) * 1000 / len(items) for p, b in zip((server, client), before))
    return dict(per_s=rps, p50_ms=np.percentile(lat, 50), p95_ms=np.percentile(lat, 95), p99_ms=np.percentile(lat, 99),
                server_cpu_ms=server_ms, client_cpu_ms=client_ms)


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--photos", type=Path)
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--backend", default="auto", choices=["auto", "openvino", "onnxruntime"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"])
    ap.add_argument("--server-threads", type=int, help="the server's model threads (DOG_BREED_THREADS; default: its CPUs)")
    args = ap.parse_args()
    data = sample_photos(120, args.photos or stanford_photos(root=REPO))
    items = [data[i % len(data)] for i in range(args.requests)]
    rounds = []
    with tempfile.TemporaryDirectory() as d:
        extra = (["--model-dir", str(args.model_dir)] if args.model_dir else []) + ["--backend", args.backend, "--precision", args.precision]
        threads = {"DOG_BREED_THREADS": str(args.server_threads)} if args.server_threads else {}
        with LocalServer("--store-url", f"sqlite:///{d}/predictions.db", *extra, cwd=d, ready=True, env=threads) as s:
            server = psutil.Process(s.proc.pid)
            card = httpx.get(s.url + "/model").json()
            rss_idle = server.memory_info().rss
            uploader, bodies = Uploader(s.url), {}
            def post(b):
                if id(b) not in bodies: bodies[id(b)] = multipart(b)
                status, answer = uploader.post("/predict", *bodies[id(b)])
                if status != 200: raise RuntimeError(answer.decode(errors="replace"))
            for b in items: post(b)   # every body built (and every photo decoded once) before the clock runs
            from dog_breed_classifier.served_model import serving_model_dir
            folder = args.model_dir or serving_model_dir(None, quiet=True)[0]
            predictors = {b: Predictor.from_dir(folder, backend=args.backend, precision=args.precision, batch_size=b)
                          for b in BATCHES}
            assert predictors[1].model_version == card["model_version"]
            for p in predictors.values(): p.predict(items[:8])
            for r in range(args.rounds):   # back to back: the API at each level, then the Predictor at its best batch
                row = {f"api c={c}": level(post, items, c, server) for c in LEVELS}
                row["best_batch"], row["predictor_per_s"], row["predictor_cpu_ms"] = predictor_best(predictors, items)
                rounds.append(row)
                print(f"round {r + 1}: " + ", ".join(f"c={c} {row[f'api c={c}']['per_s']:.1f}/s" for c in LEVELS)
                      + f"; Predictor {row['predictor_per_s']:.1f}/s at batch {row['best_batch']}", flush=True)
            rss_loaded = server.memory_info().rss
            with sqlite3.connect(Path(d)/"predictions.db") as db: rows = db.execute("select count(*) from predictions").fetchone()[0]
    med = lambda values: float(np.median(values))
    metrics = ("per_s", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms", "client_cpu_ms")
    levels = {f"api c={c}": {m: round(med([r[f"api c={c}"][m] for r in rounds]), 2) for m in metrics} for c in LEVELS}
    share = {c: med([r[f"api c={c}"]["per_s"] / r["predictor_per_s"] for r in rounds]) for c in LEVELS}
    best = dict(per_s=round(med([r["predictor_per_s"] for r in rounds]), 1), batch=[r["best_batch"] for r in rounds],
                cpu_ms=round(med([r["predictor_cpu_ms"] for r in rounds]), 2))
    sent = len(items) + args.rounds * len(LEVELS) * args.requests
    print(f"\n{cpu_kind()}; {card['model_version']} on {card['runtime']['backend']} ({card['runtime']['file']}, "
          f"{card['runtime']['precision']}); {len(data)} distinct photos, {args.requests} requests per level, "
          f"median of {args.rounds} rounds\n")
    print(f"{'':10} {'/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'of best':>8} {'server CPU ms':>14} {'client CPU ms':>14}")
    for c in LEVELS:
        r = levels[f"api c={c}"]
        print(f"{f'api c={c}':10} {r['per_s']:7.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} {share[c]:8.0%}"
              f" {r['server_cpu_ms']:14.1f} {r['client_cpu_ms']:14.1f}")
    print(f"Predictor alone, best batch ({best['batch']}): {best['per_s']}/s, {best['cpu_ms']} CPU ms a photo")
    print(f"rows logged {rows} (requests sent {sent}); server RSS idle {rss_idle / 2**20:.0f} MB, after load {rss_loaded / 2**20:.0f} MB")
    write_results("api_throughput", dict(model_version=card["model_version"], runtime=card["runtime"], rows_logged=rows,
                                         requests_sent=sent, rss_idle_mb=rss_idle / 2**20, rss_loaded_mb=rss_loaded / 2**20,
                                         levels=levels, share_of_predictor_best={f"c={c}": round(v, 3) for c, v in share.items()},
                                         predictor_best=best, rounds=rounds))


if __name__ == "__main__":
    main()
