"""Soak: tens of thousands of predictions against a real `dog-breed serve`, at concurrency changing between 1 and 32,
with the server's resident memory, open file descriptors and threads and the clients' p50/p99 latency sampled over
time. Prints growth after warm-up and the drift of p99 from the first to the last quarter; writes
benchmarks/results/soak.json.

    python benchmarks/soak.py [--requests 20000] [--model-dir DIR]

A leak shows as RSS or descriptors climbing after warm-up; the SQLite log grows by design (about 3 KB a prediction,
the embedding included), which is why its size is printed beside the process figures.
"""
from __future__ import annotations

import concurrent.futures as cf
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmark_io import argument_parser, write_results
from dog_breed_classifier.measure import LocalServer, Stopwatch, sample_photos
from dog_breed_classifier.served_model import serving_model_dir

CONCURRENCY = (1, 4, 16, 32, 8, 2, 24, 12)   # one level per phase, cycled


def phase(url: str, n: int, concurrency: int, images: list[bytes]) -> list[tuple[int, float]]:
    "`n` predictions from `concurrency` threads: (status, seconds) each."
    client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency))
    def one(i):
        t = Stopwatch()
        try: status = client.post(url + "/predict", files={"file": ("d.jpg", images[i % len(images)], "image/jpeg")}).status_code
        except httpx.TransportError: status = 0
        return status, t.seconds
    with client, cf.ThreadPoolExecutor(concurrency) as pool: return list(pool.map(one, range(n)))


def sample_process(proc: psutil.Process, db: Path, stop: threading.Event, samples: list, every: float = 2.0):
    t0 = time.monotonic()
    while not stop.wait(every):
        with proc.oneshot():
            samples.append(dict(t=round(time.monotonic() - t0, 1), rss_mb=proc.memory_info().rss / 2**20,
                                fds=proc.num_fds(), threads=proc.num_threads(),
                                db_mb=sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20))


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--phase", type=int, default=1_000, help="predictions per concurrency phase")
    ap.add_argument("--model-dir", help="a serving folder (default: what `dog-breed serve` would choose)")
    args = ap.parse_args()
    model_dir = args.model_dir or str(serving_model_dir(None, quiet=True)[0])
    images = sample_photos(24, size=(360, 300))
    with tempfile.TemporaryDirectory() as d, LocalServer("--store-url", f"sqlite:///{d}/predictions.db", "--model-dir", model_dir, "--no-ui", cwd=d, ready=True) as s:
        url, proc = s.url, s.proc
        server = psutil.Process(proc.pid)
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=sample_process, args=(server, Path(d)/"predictions.db", stop, samples), daemon=True)
        sampler.start()
        phases, sent, t0 = [], 0, Stopwatch()
        while sent < args.requests:
            c = CONCURRENCY[len(phases) % len(CONCURRENCY)]
            n = min(args.phase, args.requests - sent)
            t = Stopwatch()
            res = phase(url, n, c, images)
            ms = np.array([s for code, s in res if code == 200]) * 1000
            phases.append(dict(concurrency=c, requests=n, errors=sum(code != 200 for code, _ in res),
                               per_s=round(n / t.seconds, 1), p50_ms=round(float(np.percentile(ms, 50)), 1),
                               p99_ms=round(float(np.percentile(ms, 99)), 1), at_s=round(t0.seconds, 1)))
            sent += n
            print(f"{sent:6d} sent  c={c:2d}  {phases[-1]['per_s']:6.1f}/s  p50 {phases[-1]['p50_ms']:6.1f} ms  "
                  f"p99 {phases[-1]['p99_ms']:6.1f} ms  errors {phases[-1]['errors']}  "
                  f"rss {samples[-1]['rss_mb'] if samples else 0:.0f} MB  fds {samples[-1]['fds'] if samples else 0}", flush=True)
        stop.set(); sampler.join()
        seconds = t0.seconds
    warm = [s for s in samples if s["t"] >= samples[-1]["t"] * 0.2]   # after the first fifth: caches, pools, allocator warmed
    quarter = max(1, len(phases) // 4)
    same_c = lambda ps: {p["concurrency"]: p["p99_ms"] for p in ps}
    first, last = same_c(phases[:quarter * 2]), same_c(phases[-quarter * 2:])
    drift = {c: round(last[c] / first[c], 2) for c in first if c in last}
    result = dict(requests=sent, seconds=round(seconds, 1), errors=sum(p["errors"] for p in phases), phases=phases,
                  rss_mb=dict(start=round(samples[0]["rss_mb"], 1), warm=round(warm[0]["rss_mb"], 1), end=round(samples[-1]["rss_mb"], 1),
                              growth_after_warm_up=round(samples[-1]["rss_mb"] - warm[0]["rss_mb"], 1)),
                  fds=dict(warm=warm[0]["fds"], end=samples[-1]["fds"], max=max(s["fds"] for s in samples)),
                  threads=dict(warm=warm[0]["threads"], end=samples[-1]["threads"]),
                  db_mb_end=round(samples[-1]["db_mb"], 1), p99_last_over_first_same_concurrency=drift, samples=samples)
    print(f"\n{sent} predictions in {seconds:.0f} s ({sent / seconds:.0f}/s), {result['errors']} errors")
    print(f"RSS {result['rss_mb']['start']:.0f} MB at start, {result['rss_mb']['warm']:.0f} after warm-up, {result['rss_mb']['end']:.0f} "
          f"at the end: {result['rss_mb']['growth_after_warm_up']:+.1f} MB after warm-up")
    print(f"open descriptors {result['fds']['warm']} after warm-up, {result['fds']['end']} at the end (max {result['fds']['max']}); "
          f"threads {result['threads']['warm']} → {result['threads']['end']}; SQLite log {result['db_mb_end']:.0f} MB")
    print("p99 last/first at the same concurrency:", drift)
    write_results("soak", result)


if __name__ == "__main__":
    main()
