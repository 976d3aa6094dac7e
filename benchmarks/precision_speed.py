"""End to end, files → answers: the served model (the precision export chose), the same folder in fp32, and torch **at
its best on this machine** — paired runs in one process, on the same real photos.

    python benchmarks/precision_speed.py [--model-dir models/serving] [--dev DIR] [--photos 256] [--runs 3]
                                         [--sweep-seconds 4] [--no-compile]

First each contender's best setting is found, model only (decoded, normalised batches), on this machine:
- torch: the serving folder's own weights in a timm model (`model.load_serving_model`), `torch.inference_mode`, at
  batch 1, 4, 8 and 32, NCHW and channels_last, eager and `torch.compile` (where it compiles: a failure is printed and
  the sweep goes on without it) — what timm's benchmark.py sweeps;
- the `Predictor` with `precision="auto"` and `"fp32"` at the same batch sizes.
Then each runs at its own best, in paired rounds whose order rotates: model only (the ceiling of the path around
it) and end to end — the `Predictor` at its best batch size from all the photo files to answers in one call (decode,
crop, normalise, the runtime, the answers with their 14 image statistics; it decodes and prepares the next batch
while the runtime runs one), torch from photo files to top-1 with timm's own evaluation transform (what a torch
user would write). The figure is each path's median over the rounds; the ratios are taken within each round, then
their median. Says which CPU (VNNI or only AVX2). Writes benchmarks/results/precision_speed.json.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark_io import REPO, argument_parser, photos_argument, write_results
from dog_breed_classifier.images import model_batch
from dog_breed_classifier.inference import Predictor
from dog_breed_classifier.measure import items_per_second, machine, paired_timings, photo_files
from dog_breed_classifier.model import load_serving_model

BATCHES = (1, 4, 8, 32)
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def torch_settings(serving, compile: bool) -> dict:
    "name → a model-only call on an N×3×H×W array: eager and (if asked) `torch.compile`, in each memory layout."
    def call(module, layout):
        @torch.inference_mode()
        def run(x): return module(torch.from_numpy(x).contiguous(memory_format=layout))[0]
        return run
    settings = {}
    for name, layout in LAYOUTS.items():
        module = copy.deepcopy(serving).eval().to(memory_format=layout)
        settings[f"torch eager {name}"] = call(module, layout)
        if compile: settings[f"torch.compile {name}"] = call(torch.compile(module), layout)
    return settings


def sweep(calls: dict, inputs: np.ndarray, seconds: float) -> tuple[dict, dict]:
    "Model-only img/s of every call at every batch size in `BATCHES`, and the calls that failed (why, in words)."
    speed, failed = {}, {}
    for name, fn in calls.items():
        for batch in BATCHES:
            try: speed[(name, batch)] = items_per_second(fn, inputs, batch, seconds)
            except Exception as e:   # torch.compile needs a C++ compiler and may not support every op: say so, go on
                failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                break
        print(f"  {name:32} " + "  ".join(f"b{b} {speed[(name, b)]:6.1f}" for b in BATCHES if (name, b) in speed)
              + (f"  FAILED {failed[name]}" if name in failed else ""), flush=True)
    return speed, failed


def best(speed: dict, prefix: str) -> tuple[str, int]:
    "The (setting, batch) of `speed` whose name starts with `prefix` that runs fastest."
    return max((k for k in speed if k[0].startswith(prefix)), key=speed.get)


def torch_end_to_end(serving, fn):
    "files → top-1 with timm's own evaluation transform, then torch's call `fn`."
    import timm.data
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=serving.model))
    return lambda files: fn(torch.stack([transform(Image.open(f).convert("RGB")) for f in files]).numpy()).argmax(1)


def in_batches(fn, items, batch: int):
    "A call that runs `fn` over all of `items`, `batch` at a time (one unit of `paired_timings`)."
    return lambda: [fn(items[i:i + batch]) for i in range(0, len(items), batch)]


def paired(calls: dict, items, runs: int) -> dict[str, list[float]]:
    "Items/s of every (call, batch) in every round, rounds paired."
    seconds = paired_timings({k: in_batches(fn, items, b) for k, (fn, b) in calls.items()}, runs)
    return {k: [len(items) / s for s in v] for k, v in seconds.items()}


def median_ratio(rounds: dict, a: str, b: str) -> float:
    return round(float(np.median(np.array(rounds[a]) / np.array(rounds[b]))), 2)


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--model-dir", type=Path, default=REPO/"models"/"serving")
    photos_argument(ap)
    ap.add_argument("--photos", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sweep-seconds", type=float, default=4.0, help="seconds per setting and batch in the sweep")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the sweep")
    args = ap.parse_args()
    files = photo_files(args.dev.resolve(), limit=args.photos)   # spread over the breeds
    auto = Predictor.from_dir(args.model_dir, batch_size=max(BATCHES), tta=False)
    fp32 = Predictor.from_dir(args.model_dir, batch_size=max(BATCHES), tta=False, precision="fp32")
    serving = load_serving_model(auto.model_dir).eval()
    inputs = model_batch(files, auto.spec)
    print(f"{machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {auto.model_version}\n"
          f"model-only sweep, img/s ({args.sweep_seconds:.0f} s a setting):", flush=True)
    served = {f"served ({auto.precision}, {auto.backend.name})": auto.run, f"fp32 ({fp32.backend.name})": fp32.run}
    torch_calls = torch_settings(serving, not args.no_compile)
    speed, failed = sweep({**served, **torch_calls}, inputs, args.sweep_seconds)
    (a_name, a_batch), (f_name, f_batch) = best(speed, "served"), best(speed, "fp32")
    t_name, t_batch = best(speed, "torch")
    torch_fn = torch_calls[t_name]
    contenders = {"served": (auto, a_batch), "fp32": (fp32, f_batch)}
    model_only = paired({**{k: (p.run, b) for k, (p, b) in contenders.items()}, "torch": (torch_fn, t_batch)},
                        inputs, args.runs)
    # end to end, each `Predictor` gets all the files at once with its best batch size: it prepares the next batch while
    # the runtime runs this one
    at_best = {k: Predictor.from_dir(args.model_dir, batch_size=b, tta=False, precision=p.precision)
               for k, (p, b) in contenders.items()}
    e2e = paired({**{k: (p.predict, len(files)) for k, p in at_best.items()},
                  "torch": (torch_end_to_end(serving, torch_fn), t_batch)}, files, args.runs)
    med = lambda rounds: {k: round(float(np.median(v)), 1) for k, v in rounds.items()}
    result = dict(model=auto.model_version, photos=len(files), runs=args.runs, torch=torch.__version__,
                  best={"served": f"{a_name}, batch {a_batch}", "fp32": f"{f_name}, batch {f_batch}",
                        "torch": f"{t_name}, batch {t_batch}"},
                  sweep={f"{k} batch {b}": round(v, 1) for (k, b), v in speed.items()}, compile_failed=failed,
                  model_only=med(model_only), end_to_end=med(e2e),
                  served_vs_torch_best=median_ratio(e2e, "served", "torch"),
                  served_vs_fp32=median_ratio(e2e, "served", "fp32"),
                  served_model_only_vs_torch_best=median_ratio(model_only, "served", "torch"),
                  path_share={k: round(float(np.median(np.array(e2e[k]) / np.array(model_only[k]))), 3) for k in e2e})
    report(result)
    write_results("precision_speed", result)


def report(r: dict):
    print("\nbest settings: " + "; ".join(f"{k}: {v}" for k, v in r["best"].items()))
    print(f"{r['photos']} photo files, median of {r['runs']} paired rounds, img/s")
    for k in r["end_to_end"]:
        print(f"  {k:7} end to end {r['end_to_end'][k]:6.1f}   model only {r['model_only'][k]:6.1f}   "
              f"end to end / model only {r['path_share'][k]:.0%}")
    print(f"served vs torch at its best ({r['best']['torch']}): {r['served_vs_torch_best']}× end to end, "
          f"{r['served_model_only_vs_torch_best']}× model only; served vs fp32 {r['served_vs_fp32']}× end to end")


if __name__ == "__main__":
    main()
