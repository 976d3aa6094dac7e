"""What knowing the client costs a request: naming the key (constant-time comparison with every key), or hashing the
caller's address with the store's salt, against recording one prediction (decode, predict, commit) in the same run.

    python benchmarks/client_cost.py [--keys 3 100 1000] [--photos 32]

Prints microseconds per call and each as a share of one recorded prediction (the zero-shot model, OpenVINO or ONNX
Runtime as `auto` picks, a fresh SQLite store). Writes benchmarks/results/client_cost.json.
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np

from benchmark_io import argument_parser, write_results
from dog_breed_classifier.measure import Stopwatch


def per_call(fn, seconds: float = 1.0) -> float:
    "Seconds per call of `fn`, called for about `seconds` (after one warm-up call)."
    fn(); n, t = 0, Stopwatch()
    while t.seconds < seconds: fn(); n += 1
    return t.seconds / n


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--keys", type=int, nargs="+", default=[3, 100, 1000], help="key-file sizes to time (default 3 100 1000)")
    ap.add_argument("--photos", type=int, default=32, help="drawn photos recorded to time a prediction (default 32)")
    args = ap.parse_args()
    from dog_breed_classifier.answers import PredictionRecorder
    from dog_breed_classifier.api import ApiKeys
    from dog_breed_classifier.data import draw_sample_dog
    from dog_breed_classifier.inference import Predictor
    from dog_breed_classifier.monitoring import PredictionStore
    from dog_breed_classifier.served_model import cached_zero_shot_serving_dir
    work = Path(tempfile.mkdtemp())
    store = PredictionStore(f"sqlite:///{work/'p.db'}")
    record = PredictionRecorder(Predictor.from_dir(cached_zero_shot_serving_dir()), store)
    photos = []
    for i in range(args.photos):
        buf = io.BytesIO(); draw_sample_dog("pug", np.random.default_rng(i), (400, 320)).save(buf, "JPEG"); photos.append(buf.getvalue())
    i = iter(range(10**9))
    predict = per_call(lambda: record(photos[next(i) % len(photos)], "api", "partner"), seconds=5.0)
    result = {"recorded_prediction_ms": round(predict * 1000, 2)}
    address = per_call(lambda: store.address_client("api", "203.0.113.7"))
    result["address_client_us"] = round(address * 1e6, 2)
    for n in args.keys:
        keys = ApiKeys({f"client{k}": f"k-{k:030d}" for k in range(n)})
        last = f"k-{n - 1:030d}"   # the last key: every key compared, as for any key
        result[f"name_of_{n}_keys_us"] = round(per_call(lambda keys=keys, last=last: keys.name_of(last)) * 1e6, 2)
    print(f"one recorded prediction: {result['recorded_prediction_ms']:.1f} ms (decode, predict, commit)")
    for k, v in result.items():
        if k.endswith("_us"): print(f"{k}: {v:.1f} µs = {v / 1000 / result['recorded_prediction_ms']:.4%} of a prediction")
    write_results("client_cost", result)


if __name__ == "__main__":
    main()
