"""Training throughput: fastai's loop vs a plain PyTorch loop on the same model, data and batch size, and the
data loader alone — measured in one run, alternating, so the ratios survive a noisy machine.

    python benchmarks/training_throughput.py [--photos 64] [--batch-size 16] [--size auto] [--rounds 2]

Both loops train the whole network (unfrozen) on the same fastai DataLoader (albumentations item transforms,
normalisation), so the difference is the training loop itself. Goals: fastai ≤ 10 % slower than the plain loop;
the loader ≥ 2× the training step rate (so it is never the bottleneck). Writes benchmarks/results/training.json.
"""
from __future__ import annotations

import resource
import statistics
import tempfile
from pathlib import Path

import torch
from torch import nn

from benchmark_io import REPO, argument_parser, write_results
from dog_breed_classifier.augment import prepare
from dog_breed_classifier.core import load_params
from dog_breed_classifier.measure import Stopwatch
from dog_breed_classifier.model import create_model, model_input_spec
from dog_breed_classifier.train import create_dataloaders, create_learner, training_classes


def sync():
    "Wait for the GPU's queued work (the clocks must not stop before it is done)."
    if torch.cuda.is_available(): torch.cuda.synchronize()


def time_fastai(learn, epochs=1) -> float:
    "Images/s of fastai's training phase (validation excluded)."
    seen, spent = [0], [0.0]
    from fastai.callback.core import Callback
    class Clock(Callback):
        def before_train(self): sync(); self.t0 = Stopwatch()
        def after_batch(self):
            if self.training: seen[0] += self.xb[0].shape[0]
        def after_train(self): sync(); spent[0] += self.t0.seconds
    with learn.added_cbs(Clock()), learn.no_bar(), learn.no_logging():
        learn.fit(epochs, 1e-4)
    return seen[0] / spent[0]


def time_plain(model, dl, epochs=1) -> float:
    "Images/s of the textbook loop: forward, cross-entropy, backward, AdamW step."
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    sync(); seen, t0 = 0, Stopwatch()
    for _ in range(epochs):
        for xb, yb in dl:
            xb, yb = xb.as_subclass(torch.Tensor), yb.as_subclass(torch.Tensor)   # fastai's typed tensors → plain
            loss = loss_fn(model(xb), yb)
            loss.backward(); opt.step(); opt.zero_grad()
            seen += xb.shape[0]
    sync()
    return seen / t0.seconds


def time_loader(dl) -> float:
    seen, t0 = 0, Stopwatch()
    for xb, _ in dl: seen += xb.shape[0]
    return seen / t0.seconds


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", default="auto", help="model input size in pixels (default: the architecture's)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d); (root/"params.yaml").write_text((REPO/"params.yaml").read_text())
        per_breed = max(4, args.photos // 4 * 100 // 70)   # ≈ `photos` in the train split
        params = load_params(root/"params.yaml", [f"data.sample.images_per_breed={per_breed}", "data.sample.breeds=[pug, beagle, chihuahua, borzoi]",
                                                  "augment.offline=[]", f"augment.online.size={args.size}", f"train.batch_size={args.batch_size}"])
        prepare(params, root, progress=False)
        classes = training_classes(root/"data"/"processed", "data")
        dls = create_dataloaders(root/"data"/"processed", classes, params, model_input_spec(params.model.arch, params.augment.online.size))
        fastai_model, plain_model = create_model(classes=classes), create_model(classes=classes).to(dls.device)   # GPU when there is one
        learn = create_learner(dls, fastai_model)
        learn.unfreeze()
        time_loader(dls.train); time_plain(plain_model, dls.train)          # warm-up (allocator, thread pools)
        fa, pl, ld = [], [], []
        for _ in range(args.rounds):
            fa.append(time_fastai(learn)); pl.append(time_plain(plain_model, dls.train)); ld.append(time_loader(dls.train))
    f, p, loader = statistics.median(fa), statistics.median(pl), statistics.median(ld)
    result = dict(train_photos=len(dls.train_ds), batch_size=args.batch_size, size=args.size, threads=torch.get_num_threads(),
                  fastai_images_per_s=f, plain_images_per_s=p, fastai_slower_pct=(p / f - 1) * 100,
                  loader_images_per_s=loader, loader_vs_step=loader / p,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rounds=dict(fastai=fa, plain=pl, loader=ld))
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    result["device"] = where
    print(f"{len(dls.train_ds)} photos, batch {args.batch_size}, {args.size}px, {where}, whole network trained (fp32)")
    print(f"fastai loop  {f:7.2f} img/s")
    print(f"plain loop   {p:7.2f} img/s   → fastai {result['fastai_slower_pct']:+.1f} % slower (goal ≤ 10 %)")
    print(f"loader alone {loader:7.1f} img/s   → {loader / p:.1f}× the training step rate (goal ≥ 2×)")
    print(f"peak memory  {result['peak_rss_mb']:.0f} MB")
    write_results("training", result)


if __name__ == "__main__":
    main()
