"""What a drift check costs, by part, at production sizes: 10 000 reference rows × 1 000 current rows.

    python benchmarks/drift_speed.py [--reference-rows 10000] [--current-rows 1000]

The rows are generated (14 statistics, 120 breeds, 1 280-d float16 embeddings; the current side shifted a little)
because timing does not depend on what the numbers are. Each part is timed in this one process:
- `drift_decision` (the verdict alone: two `DriftedColumnsCount`),
- `drift_summary` (+ every column's `ValueDrift`, the JSON a drift check records and GET /drift serves),
- `drift_report` with HTML (+ `DataDriftPreset` and `EmbeddingsDrift`, the report GET /drift?format=html serves),
and `current_from_store` reading 1 000 rows from a SQLite store. Prints seconds and ratios to the decision; writes
benchmarks/results/drift_speed.json.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark_io import argument_parser, write_results
from dog_breed_classifier.core import DriftSettings
from dog_breed_classifier.drift import (
    PREDICTION_COLUMNS,
    DriftData,
    current_from_store,
    drift_decision,
    drift_report,
    drift_summary,
)
from dog_breed_classifier.images import IMAGE_STAT_NAMES, STAT_COLUMNS
from dog_breed_classifier.measure import Stopwatch
from dog_breed_classifier.monitoring import PredictionStore


def rows(n: int, rng: np.random.Generator, shift: float = 0.0) -> DriftData:
    "`n` generated rows: statistics around photo-like values, breeds, confidences, embeddings."
    centre = np.array([115, 60, 112, 2, 253, 7.5, 0.08, 140, 190, 600, 40, 1.33, 500, 375], dtype=float)
    stats = centre * (1 + shift) + rng.normal(0, 0.15, (n, len(centre))) * centre
    frame = pd.DataFrame(stats, columns=STAT_COLUMNS)
    frame["breed"] = rng.choice([f"breed_{i}" for i in range(120)], n)
    frame["confidence"] = rng.beta(5, 1.5, n)
    frame["is_dog"] = np.where(rng.random(n) < 0.97, "dog", "no dog")
    emb = (rng.normal(shift, 1, (n, 1280))).astype(np.float16).astype(np.float32)
    return DriftData(frame=frame[[*STAT_COLUMNS, *PREDICTION_COLUMNS]], embeddings=emb, source="generated")


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--reference-rows", type=int, default=10_000)
    ap.add_argument("--current-rows", type=int, default=1_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    s = DriftSettings(reference_rows=args.reference_rows)
    reference, current = rows(args.reference_rows, rng), rows(args.current_rows, rng, shift=0.05)
    drift_decision(reference.sample(200), current.sample(100), s)   # imports Evidently, warms up
    fresh = DriftData(frame=reference.frame, embeddings=reference.embeddings, source="generated")      # PCA not fitted yet
    with Stopwatch() as first: drift_decision(fresh, current, s)
    with Stopwatch() as decision: verdict = drift_decision(fresh, current, s)
    with Stopwatch() as summary: drift_summary(fresh, current, s)
    with tempfile.TemporaryDirectory() as d:
        with Stopwatch() as report: drift_report(fresh, current, s, html=Path(d)/"drift.html")
        html_mb = (Path(d)/"drift.html").stat().st_size / 1e6
        store = PredictionStore(f"sqlite:///{d}/p.db")
        for i in range(args.current_rows):
            row = current.frame.iloc[i]
            store.add(dict(model_version="bench", breed=row.breed, confidence=float(row.confidence),
                           top_k=[dict(breed=row.breed, probability=float(row.confidence))], is_dog=row.is_dog == "dog",
                           dog_probability=0.9, latency_ms=1.0, width=500, height=375,
                           image_stats={n: float(row[f"stat_{n}"]) for n in IMAGE_STAT_NAMES}, embedding=current.embeddings[i]))
        with Stopwatch() as read: current_from_store(store, args.current_rows)
    first, decision, summary, report, read = (w.stopped for w in (first, decision, summary, report, read))
    result = dict(reference_rows=args.reference_rows, current_rows=args.current_rows,
                  decision_first_s=first, decision_s=decision, summary_s=summary, report_html_s=report, html_mb=html_mb,
                  store_read_s=read, verdict=verdict["status"])
    print(f"{args.reference_rows:,} reference × {args.current_rows:,} current rows (generated)")
    print(f"drift_decision, first (fits the PCA) {first:6.2f} s")
    print(f"drift_decision                       {decision:6.2f} s   1.0×")
    print(f"drift_summary (a check's JSON)     {summary:6.2f} s  {summary / decision:4.1f}×")
    print(f"drift_report with HTML ({html_mb:.1f} MB)     {report:6.2f} s  {report / decision:4.1f}×")
    print(f"current_from_store, {args.current_rows} rows        {read:6.2f} s  {read / decision:4.1f}×")
    write_results("drift_speed", result, indent=2)


if __name__ == "__main__":
    main()
