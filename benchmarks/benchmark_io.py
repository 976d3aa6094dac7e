"""What every benchmark script shares for input and output: its argument parser, where the real photos are, and how
results are written (with the machine they were measured on). Timing, photo lists and servers are the library's
`dog_breed_classifier.measure` (the tests and deploy/ use it too).

    from benchmark_io import REPO, argument_parser, photos_argument, write_results

Scripts in this folder run as `python benchmarks/NAME.py`, so this module is importable beside them. Results go to
`benchmarks/results/NAME.json` (git-ignored), written whole (never half a file), with the path printed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dog_breed_classifier.core import atomic_write, stanford_photos
from dog_breed_classifier.measure import machine

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO/"benchmarks"/"results"


def argument_parser(doc: str) -> argparse.ArgumentParser:
    "A parser whose --help shows the script's docstring as written."
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def photos_argument(parser: argparse.ArgumentParser, which: str = "stanford_dogs_dev", flag: str = "--dev"):
    "Add `flag`: a Stanford Dogs folder (holding Images/), by default the one `core.stanford_photos` finds."
    found = stanford_photos(which, REPO)
    parser.add_argument(flag, type=Path, default=found or REPO.parent/"shared"/"data"/which,
                        help=f"a Stanford Dogs folder holding Images/ (default: {found or '$DOG_BREED_PHOTOS/' + which})")


def write_results(name: str, result, indent: int = 1) -> Path:
    "Write `result` as benchmarks/results/`name`.json (a dict gains the `machine` it was measured on) and say where."
    if isinstance(result, dict): result = {"machine": machine(), **result}
    print(f"machine: {result['machine'] if isinstance(result, dict) else machine()}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = atomic_write(RESULTS/f"{name}.json", json.dumps(result, indent=indent, default=str) + "\n")
    print(f"results: {path.relative_to(REPO)}")
    return path
