"""Data poisoning through feedback, on real photos: one client labels N photos of breed A as breed B among honest
words from others. How many poisoned photos reach the training data under each harvest policy, how many honest ones
are kept after review, and — with everyone trusted, as before named keys and review — how far top-1 on A falls after
retraining, and whether the promotion gate refuses that model.

    python benchmarks/poisoning.py [--train ../shared/data/stanford_dogs_train] [--dev ../shared/data/stanford_dogs_dev]
                                   [--breeds 20] [--a pug] [--b beagle] [--source-per-breed 30] [--keep DIR]

The setting (a temporary folder, or --keep DIR): `--breeds` breeds including A and B; the first
`--source-per-breed` training photos of each are the project's source (`data.source=folder`, 20 % held out as the
test split the gate scores on); the rest are what users send. Every upload goes through the real recorder (the
zero-shot model answers, the store and the archive keep it). The intruder uploads the photos of A left (the
training photos past the source's and the 10 dev photos) and calls each B; a partner (a key) and 12 demo visitors give honest words on 5 photos of every other breed.

Harvest policies, each into its own folder, on the same store:
  everyone trusted   --trusted partner intruder ui   (what harvest did before clients were recorded)
  default            loop.trusted_clients = [cli]     (nobody here: every word waits)
  client review      accept-client partner, reject-client intruder
  word review        then a curator accepts the visitors' words one by one (an oracle: the true breed)

Then two projects are prepared, trained, evaluated and exported with params.yaml's defaults: "reviewed" with the
word-review folder as `data.extra_paths`, "poisoned" with the everyone-trusted folder. Both are scored on the same
test split (top-1 on A, share of A answered B, top-1 overall) and the poisoned model goes through the promotion gate
against the reviewed one. Writes benchmarks/results/poisoning.json.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark_io import REPO, argument_parser, photos_argument, write_results
from dog_breed_classifier.measure import Stopwatch

CLI = [str(Path(sys.executable).parent/"dog-breed")]
HONEST_PER_BREED = 5


def folders(images: Path, n: int, a: str, b: str) -> list[Path]:
    "`n` breed folders of `images` (class folders like n02110958-pug): A and B first, then the others in order."
    every = sorted(p for p in images.iterdir() if p.is_dir())
    named = lambda breed: next(p for p in every if p.name.split("-", 1)[1].lower() == breed)
    rest = [p for p in every if p not in (named(a), named(b))]
    return [named(a), named(b), *rest[:n - 2]]


def link_source(breeds: list[Path], out: Path, per_breed: int) -> Path:
    "The project's source: the first `per_breed` photos of each breed, linked (never copied) into `out`."
    for d in breeds:
        (out/d.name).mkdir(parents=True, exist_ok=True)
        for p in sorted(d.glob("*.jpg"))[:per_breed]: (out/d.name/p.name).symlink_to(p.resolve())
    return out


def send_words(work: Path, breeds: list[Path], dev: Path, a: str, b: str, first: int):
    "Log every upload through the real recorder and give the words; the store, the archive and who said what."
    from dog_breed_classifier.answers import PredictionRecorder, record_feedback
    from dog_breed_classifier.inference import Predictor
    from dog_breed_classifier.monitoring import ImageArchive, PredictionStore
    from dog_breed_classifier.served_model import cached_zero_shot_serving_dir
    store, archive = PredictionStore(f"sqlite:///{work/'predictions.db'}"), ImageArchive(work/"uploads")
    record = PredictionRecorder(Predictor.from_dir(cached_zero_shot_serving_dir()), store, archive)
    said = {"intruder": [], "partner": [], "visitors": []}
    poisoned = sorted(breeds[0].glob("*.jpg"))[first:] + sorted((dev/"Images"/breeds[0].name).glob("*.jpg"))
    for p in poisoned:
        pid = record(p.read_bytes(), "api", "intruder")["prediction_id"]
        record_feedback(store, pid, b, source="api", client="intruder"); said["intruder"].append(pid)
    for i, d in enumerate(breeds[1:]):
        breed = d.name.split("-", 1)[1].lower()
        for j, p in enumerate(sorted(d.glob("*.jpg"))[first:first + HONEST_PER_BREED]):
            client = "partner" if i % 2 == 0 else store.address_client("ui", f"198.51.100.{(i * 5 + j) % 12}")
            pid = record(p.read_bytes(), "api" if client == "partner" else "ui", client)["prediction_id"]
            record_feedback(store, pid, breed, source="api", client=client)
            said["partner" if client == "partner" else "visitors"].append(pid)
    return store, archive, said


def harvests(work: Path, store, archive, said: dict) -> dict:
    "The harvest policies in turn (see the docstring): what each wrote, poisoned and honest."
    from dog_breed_classifier.core import user_at_host
    from dog_breed_classifier.loop import harvest
    def outcome(name: str, **kw) -> dict:
        report = harvest(store, archive, work/name, **kw)
        written = {p.stem for p in (work/name).rglob("*.jpg")}
        return dict(poisoned=len(written & set(said["intruder"])), honest=len(written - set(said["intruder"])),
                    waiting=sum(report.waiting.values()), rejected=report.rejected, report=repr(report))
    out = {"everyone trusted": outcome("everyone_trusted", trusted=["partner", "intruder", "ui"]),
           "default": outcome("default")}
    store.review("accepted", clients=["partner"], by=user_at_host()); store.review("rejected", clients=["intruder"], by=user_at_host())
    out["client review"] = outcome("client_review")
    store.review("accepted", said["visitors"], by=user_at_host())   # a curator who looked at each photo
    out["word review"] = outcome("word_review")
    return out


def run(*args, cwd: Path) -> float:
    "Run `dog-breed ARGS` in `cwd`; the seconds it took. Exits on failure."
    t = Stopwatch()
    res = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0: raise SystemExit(f"dog-breed {' '.join(map(str, args))} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return t.seconds


def train_project(root: Path, source: Path, extra: Path) -> dict:
    "Prepare, train, evaluate and export a project on `source` plus the harvested `extra` folder; seconds per step."
    root.mkdir(parents=True, exist_ok=True); shutil.copy(REPO/"params.yaml", root/"params.yaml")
    settings = ["-S", "data.source=folder", "-S", f"data.path={source}", "-S", f"data.extra_paths=[{extra}]",
                "-S", "data.test_pct=0.2", "-S", "train.mode=local"]
    seconds = {}
    for step in ("prepare", "train", "evaluate", "export"):
        seconds[step] = round(run(step, "-q", *settings, cwd=root), 1)
        print(f"{root.name}: {step} {seconds[step]:.0f} s", flush=True)
    return seconds


def answered_b(model_dir: Path, data_dir: Path, a: str, b: str) -> float:
    "The share of the test photos of A that the model at `model_dir` calls B."
    import pandas as pd

    from dog_breed_classifier.inference import Predictor
    labels = pd.read_csv(data_dir/"labels.csv", keep_default_na=False)
    rows = labels[(labels.split == "test") & (labels.variant == "") & (labels.breed == a)]
    answers = Predictor.from_dir(model_dir).predict([data_dir/p for p in rows.path])
    return sum(x["breed"] == b for x in answers) / max(1, len(answers))


def training_history(project: Path) -> dict:
    "The epoch training kept (best loss on the source's own validation photos) and the validation figures then and at the end."
    import pandas as pd
    meta = json.loads((project/"models"/"trained"/"model.json").read_text())
    h = pd.read_csv(project/"models"/"trained"/"history.csv")
    at = lambda e: dict(valid_loss=round(float(h.valid_loss[e]), 4), valid_top1=round(float(h.accuracy[e]), 4))
    return dict(kept_epoch=meta["best_epoch"], kept=at(meta["best_epoch"]), last_epoch=at(len(h) - 1), zero_shot=at(0))


def score(work: Path, a: str, b: str) -> dict:
    "Both models on the reviewed project's test split, and the gate's verdict on the poisoned one against the reviewed one."
    from dog_breed_classifier.loop import promotion_gate
    reviewed, poisoned, data = work/"reviewed"/"models"/"serving", work/"poisoned"/"models"/"serving", work/"reviewed"/"data"/"processed"
    gate = promotion_gate(poisoned, reviewed, data)
    c = gate.comparison
    side = lambda s, d: dict(top1_a=s.per_breed.get(a), answered_b=round(answered_b(d, data, a, b), 4), top1=round(s.top1, 4),
                             log_loss=round(s.log_loss, 4), version=s.model_version, training=training_history(d.parents[1]))
    return dict(test_photos_of_a=c.breed_photos[a], reviewed=side(c.served, reviewed), poisoned=side(c.candidate, poisoned),
                gate=dict(ok=gate.ok, failed=[k.name for k in gate.checks if not k.ok],
                          checks={k.name: k.detail for k in gate.checks}), gate_table=gate.markdown())


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap, "stanford_dogs_train", "--train")
    photos_argument(ap)
    ap.add_argument("--breeds", type=int, default=20, help="how many breeds the project knows (default 20: A, B and 18 more)")
    ap.add_argument("--a", default="pug", help="the breed the intruder relabels (default: pug)")
    ap.add_argument("--b", default="beagle", help="what the intruder calls it (default: beagle)")
    ap.add_argument("--source-per-breed", type=int, default=30, help="training photos per breed in the source (default 30); "
                    "the intruder sends the rest of A's and A's dev photos")
    ap.add_argument("--score-only", action="store_true", help="only score the two models already trained in --keep DIR")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder, removed)")
    args = ap.parse_args()
    if not (args.train/"Images").is_dir() or not (args.dev/"Images").is_dir():
        raise SystemExit(f"needs the Stanford photos: {args.train}/Images and {args.dev}/Images")
    work = (args.keep or Path(tempfile.mkdtemp())).resolve(); work.mkdir(parents=True, exist_ok=True)
    if args.score_only: return report(score(work, args.a, args.b), args.a, args.b)
    breeds = folders(args.train/"Images", args.breeds, args.a, args.b)
    source = link_source(breeds, work/"source", args.source_per_breed)
    t = Stopwatch()
    store, archive, said = send_words(work, breeds, args.dev, args.a, args.b, args.source_per_breed)
    policies = harvests(work, store, archive, said)
    words_seconds = round(t.seconds, 1)
    for name, o in policies.items(): print(f"{name:>16}: {o['poisoned']:3d} poisoned, {o['honest']:3d} honest photos written, "
                                          f"{o['waiting']:3d} waiting, {o['rejected']:3d} rejected", flush=True)
    seconds = {"words and harvests": words_seconds,
               "reviewed": train_project(work/"reviewed", source, work/"word_review"),
               "poisoned": train_project(work/"poisoned", source, work/"everyone_trusted")}
    scored = report(score(work, args.a, args.b), args.a, args.b)
    write_results("poisoning", dict(breeds=len(breeds), a=args.a, b=args.b, source_per_breed=args.source_per_breed,
                                    words={k: len(v) for k, v in said.items()}, policies=policies, models=scored, seconds=seconds))
    if not args.keep: shutil.rmtree(work, ignore_errors=True)


def report(scored: dict, a: str, b: str) -> dict:
    "Print what retraining on the poisoned photos did, and the gate's verdict; `scored` as it came."
    print(f"top-1 on {a} ({scored['test_photos_of_a']} test photos): reviewed {scored['reviewed']['top1_a']:.0%}, "
          f"poisoned {scored['poisoned']['top1_a']:.0%} (answered {b}: {scored['reviewed']['answered_b']:.0%} → "
          f"{scored['poisoned']['answered_b']:.0%}); top-1 overall {scored['reviewed']['top1']:.3f} → {scored['poisoned']['top1']:.3f}")
    print(f"the promotion gate {'passes' if scored['gate']['ok'] else 'refuses'} the poisoned model against the reviewed one "
          f"(failed: {', '.join(scored['gate']['failed']) or 'none'})")
    print(scored["gate_table"].split("\n", 2)[2])   # the table and the checks (the heading is about publishing)
    for side in ("reviewed", "poisoned"):
        t = scored[side]["training"]
        print(f"{side}: kept epoch {t['kept_epoch']} (validation top-1 {t['kept']['valid_top1']:.3f}, loss {t['kept']['valid_loss']:.3f}); "
              f"last epoch {t['last_epoch']['valid_top1']:.3f}, {t['last_epoch']['valid_loss']:.3f}; "
              f"zero-shot {t['zero_shot']['valid_top1']:.3f}, {t['zero_shot']['valid_loss']:.3f}")
    return scored


if __name__ == "__main__":
    main()
