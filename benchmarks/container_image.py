"""The serving image's figures: size, build time cold and warm, start to first healthy /health, and /predict latency
from the container against the same model served by `dog-breed serve` on this machine, in one run.

    python benchmarks/container_image.py                 # zero-shot model; ~10 min on 2 cores
    python benchmarks/container_image.py --requests 200

cold: an empty image cache (debootstrap makes the base, pip fills the wheelhouse, buildah builds). warm: the base and
the wheelhouse kept (what a second build on the same machine, or a CI cache, gets); buildah rebuilds every step, as the
test does (no layer cache: on the vfs storage driver each cached layer is a full copy of the filesystem). Latencies are
measured alternately, container and host, over the same photos, so the ratio is fair on a noisy machine. Needs root,
buildah and debootstrap (deploy/offline_images.py). Writes benchmarks/results/container_image.json."""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmark_io import argument_parser
from dog_breed_classifier.measure import LocalServer, Stopwatch, sample_photos

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent/"deploy"))
import offline_images as images  # noqa: E402

TAG = "localhost/dog-breed-serve:benchmark"


def build(cache: Path, serving_dir: Path, work: Path) -> dict:
    "Make the base and the wheelhouse if `cache` lacks them, then build; the seconds each part took."
    store = images.ImageStore(cache)
    timings = {}
    t = Stopwatch(); images.make_base_image(store); timings["base_s"] = t.seconds
    t = Stopwatch(); images.serving_wheelhouse(store)
    timings["wheelhouse_s"] = t.seconds
    timings["build_s"] = images.build_serving_image(store, serving_dir, TAG, work, log=work/"build.log")   # wheels: cached now
    timings["total_s"] = timings["base_s"] + timings["wheelhouse_s"] + timings["build_s"]
    return timings


def latencies(url: str, jpegs: list[bytes], client: httpx.Client) -> list[float]:
    out = []
    for jpeg in jpegs:
        t = Stopwatch()
        r = client.post(url + "/predict", files={"file": ("dog.jpg", jpeg, "image/jpeg")})
        out.append(t.seconds*1000)
        r.raise_for_status()
    return out


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--requests", type=int, default=100, help="/predict requests to each server")
    parser.add_argument("--serving-dir", type=Path, help="an exported model (default: the zero-shot model)")
    parser.add_argument("--out", type=Path, default=HERE/"results"/"container_image.json")
    args = parser.parse_args()
    if missing := images.missing_tools(): raise SystemExit(f"needs {', '.join(missing)}: apt-get install {' '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        serving_dir = args.serving_dir
        if serving_dir is None:
            from dog_breed_classifier.export import build_zero_shot_serving_dir
            serving_dir = build_zero_shot_serving_dir(tmp/"zero_shot")
        cache = tmp/"image-cache"; cache.mkdir()
        store = images.ImageStore(cache)
        print("cold build (empty cache)…", flush=True)
        cold = build(cache, serving_dir, tmp)
        store.remove_image(TAG)
        print(f"  {cold}\nwarm build (base and wheelhouse kept)…", flush=True)
        warm = build(cache, serving_dir, tmp)
        size = store.size(TAG)
        print(f"  {warm}\n  image: {size/1e6:.0f} MB", flush=True)

        jpegs = sample_photos(args.requests, size=(400, 300))
        t = time.monotonic()
        with images.start_container(store, TAG, log=tmp/"container.log") as box:
            created_s = box.started_at - t   # buildah from: unpacking the image (vfs: a full copy)
            healthy_s = time.monotonic() - box.started_at
            print(f"container: created in {created_s:.1f} s, healthy {healthy_s:.1f} s after its start", flush=True)
            (tmp/"host").mkdir()
            host_dir = tmp/"host"
            with LocalServer("--store-url", f"sqlite:///{host_dir}/predictions.db", "--model-dir", serving_dir, cwd=host_dir,
                             ready=True) as host, httpx.Client(timeout=60) as client:
                host_url = host.url
                latencies(box.url, jpegs[:5], client); latencies(host_url, jpegs[:5], client)   # warm both up
                inside, outside = [], []
                for jpeg in jpegs:   # alternate, so both see the same machine load
                    inside += latencies(box.url, [jpeg], client)
                    outside += latencies(host_url, [jpeg], client)
        store.remove_image(TAG)

    def summary(ms): return {"p50_ms": round(statistics.median(ms), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1)}
    result = {"image_bytes": size, "cold": {k: round(v, 1) for k, v in cold.items()},
              "warm": {k: round(v, 1) for k, v in warm.items()},
              "container_created_s": round(created_s, 1), "start_to_healthy_s": round(healthy_s, 1),
              "predict_in_container": summary(inside), "predict_on_host": summary(outside),
              "p50_ratio_container_over_host": round(statistics.median(inside)/statistics.median(outside), 2),
              "requests": args.requests}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
