"""A running server following the model registry under load: 2 promotions, 2 rollbacks and a broken version.

    python benchmarks/model_switches.py [--requests 2000] [--clients 8] [--reload-interval 2] [--model-dir DIR]

Starts `dog-breed serve --registry R --reload-interval S` (a fresh SQLite log) with version A published, and sends
--requests uploads of real dev photos (drawings when there are none) from --clients threads. Meanwhile it publishes B,
rolls back to A, publishes C, rolls back to A, then publishes a version whose model.onnx is garbage. It reports failed
requests, how long each switch took to show at /model (against the reload interval), whether the broken version left
A serving with `reload_error` in /health, and checks every logged row: answered by the version that was current when
the row was written, or — between a switch being published and the server showing it — by the one before.
Writes benchmarks/results/model_switches.json.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmark_io import argument_parser, photos_argument, write_results  # noqa: E402
from dog_breed_classifier.measure import LocalServer, photo_files
from dog_breed_classifier.served_model import ModelRegistry, cached_zero_shot_serving_dir  # noqa: E402


def version_of(folder: Path, suffix: str, out: Path, broken: bool = False) -> tuple[Path, str]:
    "A copy of `folder` as another model version (same weights); `broken`: its model.onnx is garbage."
    shutil.copytree(folder, out)
    card = json.loads((out/"model_card.json").read_text())
    card["model_version"] += suffix
    (out/"model_card.json").write_text(json.dumps(card))
    if broken: (out/"model.onnx").write_bytes(b"not an onnx graph")
    return out, card["model_version"]


def now() -> dt.datetime: return dt.datetime.now(dt.timezone.utc)


def switch(url: str, action, version: str, interval: float, timeline: list) -> float:
    "Run `action` (publish or rollback), then wait until /model shows `version`; the seconds it took."
    t0, published = time.monotonic(), now()
    action()
    while httpx.get(url + "/model", timeout=30).json()["model_version"] != version:
        if time.monotonic() - t0 > interval + 30: raise SystemExit(f"{version} not served {interval + 30:.0f} s after the switch")
        time.sleep(0.05)
    timeline.append((published, now(), version))
    return time.monotonic() - t0


def rows_checked(db: Path, first: str, timeline: list, grace_s: float = 2.0) -> dict:
    """Each logged row: answered by the version current when it was written; by the one before, between the switch
    being published and the server showing it; by the one before, finishing a request that started before the swap
    (written within `grace_s` of the server showing the new version); or none of these (`other`: should be 0)."""
    with sqlite3.connect(db) as c: rows = c.execute("select created_at, model_version from predictions").fetchall()
    counts, lag = dict(rows=len(rows), as_current=0, previous_until_reloaded=0, finishing_on_previous=0, other=0), 0.0
    for created, version in rows:
        t = dt.datetime.fromisoformat(created)
        t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
        current, previous, seen = first, None, None
        for published_at, seen_at, v in timeline:
            if t < published_at: break
            current, previous, seen = v, current, seen_at
        if version == current: counts["as_current"] += 1
        elif version == previous and t < seen: counts["previous_until_reloaded"] += 1   # published, not yet loaded
        elif version == previous and (t - seen).total_seconds() <= grace_s:
            counts["finishing_on_previous"] += 1; lag = max(lag, (t - seen).total_seconds())
        else: counts["other"] += 1
    return dict(counts, longest_finish_after_switch_s=round(lag, 3))


def main():
    ap = argument_parser(__doc__)
    photos_argument(ap)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--reload-interval", type=float, default=2.0)
    ap.add_argument("--model-dir", type=Path, help="the serving folder to copy into versions (default: the zero-shot model)")
    args = ap.parse_args()
    base = args.model_dir or cached_zero_shot_serving_dir()
    photos = [f.read_bytes() for f in photo_files(args.dev, limit=120)]
    work = Path(tempfile.mkdtemp())
    registry = ModelRegistry(work/"registry")
    a = registry.publish(version_of(base, "-A", work/"A")[0]).name
    (b_dir, b), (c_dir, c) = version_of(base, "-B", work/"B"), version_of(base, "-C", work/"C")
    broken_dir, _ = version_of(base, "-broken", work/"broken", broken=True)
    statuses, lock, sent = [], threading.Lock(), iter(range(args.requests))
    with LocalServer("--store-url", f"sqlite:///{work}/predictions.db", "--registry", registry.path, "--reload-interval", args.reload_interval, "--no-ui",
                     cwd=work, ready=True) as s:
        url = s.url
        def client(k: int):
            with httpx.Client(base_url=url, timeout=60) as h:
                for i in sent:
                    r = h.post("/predict", files={"file": ("p.jpg", photos[(i + k) % len(photos)], "image/jpeg")})
                    with lock: statuses.append(r.status_code)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads: t.start()
        timeline, seconds = [], []
        for action, version in [(lambda: registry.publish(b_dir), b), (registry.rollback, a),
                                (lambda: registry.publish(c_dir), c), (registry.rollback, a)]:
            time.sleep(2); seconds.append(switch(url, action, version, args.reload_interval, timeline))
        registry.publish(broken_dir); time.sleep(args.reload_interval + 2)
        health = httpx.get(url + "/health").json()
        for t in threads: t.join()
    checked = rows_checked(work/"predictions.db", a, timeline)
    result = dict(requests=len(statuses), clients=args.clients, failed=sum(s != 200 for s in statuses),
                  reload_interval_s=args.reload_interval, switch_seconds=[round(s, 2) for s in seconds],
                  broken_version=dict(served=health["model_version"], kept_old=health["model_version"] == a,
                                      reload_error=health.get("reload_error")), rows=checked)
    print(json.dumps(result, indent=1))
    print(f"{result['failed']} of {result['requests']} requests failed; switches seen after {result['switch_seconds']} s "
          f"(interval {args.reload_interval:g} s: at most {max(seconds) / args.reload_interval:.2f}× it); "
          f"rows: {checked['as_current']} of {checked['rows']} by the version current when written, {checked['previous_until_reloaded']} "
          f"by the previous one before the server had reloaded, {checked['finishing_on_previous']} by the previous one finishing "
          f"a request (at most {checked['longest_finish_after_switch_s']} s after the switch), {checked['other']} other")
    write_results("model_switches", result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
