"""End to end, files → answers: a serving folder at the precision export chose, the same folder in fp32, and timm torch
eager of the same model — paired runs in one process, on the same real photos.

    python benchmarks/precision_speed.py [--model-dir models/serving] [--dev DIR] [--photos 256] [--batch 32] [--runs 3]

Each run times every path over the same photo files, batch by batch: `Predictor.predict` (decode, crop,
normalise, the runtime, the answers with their 14 image statistics) with `precision="auto"` and `"fp32"`, and torch
eager — the serving folder's own weights in a timm model (`model.load_serving_model`), `torch.no_grad` — fed two
ways: PIL decoding and timm's own evaluation transform for its architecture (what a torch user would write), and
the project's decode and crop (what `benchmarks/architectures.py` feeds it: JPEGs decoded at reduced scale). The order of the paths rotates from run to run; the
figure is each path's median over the runs, and the ratios are taken within each run, then their median. Model only
(inputs already decoded) is timed too, so the share that decoding and the answers take shows. Says which CPU
(VNNI or only AVX2). Writes benchmarks/results/precision_speed.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark_io import REPO, argument_parser, photos_argument, write_results
from dog_breed_classifier.core import cpu_kind
from dog_breed_classifier.images import model_batch
from dog_breed_classifier.inference import Predictor
from dog_breed_classifier.measure import paired_timings, photo_files
from dog_breed_classifier.model import load_serving_model


def torch_eager(model_dir: Path):
    "files → top-1 with timm's own evaluation transform and the folder's weights in torch, eager."
    import timm.data
    serving = load_serving_model(model_dir).eval()
    config = timm.data.resolve_data_config({}, model=serving.model)
    transform = timm.data.create_transform(**config)

    @torch.no_grad()
    def run(files):
        x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
        return serving(x)[0].argmax(1).numpy()
    return run, serving


def project_decode_then_torch(serving, p: Predictor):
    "files → top-1 with the project's decode and crop, then the same torch model, eager."
    @torch.no_grad()
    def run(files):
        x = model_batch([p.decode(f) for f in files], p.spec)
        return serving(torch.from_numpy(x))[0].argmax(1).numpy()
    return run


def in_batches(fn, items: list, batch: int):
    "A call that runs `fn` over all of `items`, `batch` at a time (one unit of `paired_timings`)."
    return lambda: [fn(items[i:i + batch]) for i in range(0, len(items), batch)]


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--model-dir", type=Path, default=REPO/"models"/"serving")
    photos_argument(ap)
    ap.add_argument("--photos", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    files = photo_files(args.dev.resolve(), limit=args.photos)   # spread over the breeds
    auto = Predictor.from_dir(args.model_dir, batch_size=args.batch, tta=False)
    fp32 = Predictor.from_dir(args.model_dir, batch_size=args.batch, tta=False, precision="fp32")
    eager, serving = torch_eager(auto.model_dir)
    paths = {f"auto ({auto.precision}, {auto.backend.name})": lambda fs: auto.predict(fs),
             f"fp32 ({fp32.backend.name})": lambda fs: fp32.predict(fs), "timm torch eager": eager,
             "torch eager, the project's decode": project_decode_then_torch(serving, fp32)}
    inputs = model_batch(files, auto.spec)

    @torch.no_grad()
    def eager_model_only(x): return serving(torch.from_numpy(x))[0]
    model_only = {"auto": auto.run, "fp32": fp32.run, "timm torch eager": eager_model_only}
    names = list(paths)
    rate = lambda seconds, n: {k: [n / s for s in v] for k, v in seconds.items()}   # img/s of every round
    e2e = rate(paired_timings({k: in_batches(fn, files, args.batch) for k, fn in paths.items()}, args.runs), len(files))
    alone = rate(paired_timings({k: in_batches(fn, inputs, args.batch) for k, fn in model_only.items()}, args.runs),
                 len(inputs))
    a, f, t, _ = names
    ratio = lambda x, y: float(np.median(np.array(e2e[x]) / np.array(e2e[y])))
    result = dict(machine=cpu_kind(), model=auto.model_version, photos=len(files), batch=args.batch, runs=args.runs,
                  end_to_end={k: round(float(np.median(v)), 1) for k, v in e2e.items()},
                  model_only={k: round(float(np.median(v)), 1) for k, v in alone.items()},
                  auto_vs_torch=round(ratio(a, t), 2), auto_vs_fp32=round(ratio(a, f), 2), fp32_vs_torch=round(ratio(f, t), 2),
                  agree_auto_fp32=float(np.mean([x["top_k"][0]["breed"] == y["top_k"][0]["breed"]
                                                 for x, y in zip(auto.predict(files), fp32.predict(files))])))
    print(f"{result['machine']}; {result['model']}; {len(files)} photo files, batch {args.batch}, median of {args.runs} paired runs")
    for k in names: print(f"  {k:34} end to end {result['end_to_end'][k]:6.1f} img/s")
    for k, v in result["model_only"].items(): print(f"  {k:34} model only {v:6.1f} img/s")
    print(f"  auto vs torch eager {result['auto_vs_torch']}×, auto vs fp32 {result['auto_vs_fp32']}×, "
          f"fp32 vs torch eager {result['fp32_vs_torch']}×; top-1 answers auto = fp32 on {result['agree_auto_fp32']:.1%}")
    write_results("precision_speed", result)


if __name__ == "__main__":
    main()
