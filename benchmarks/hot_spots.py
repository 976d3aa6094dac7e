"""Hot spots from py-spy's collapsed stacks (`py-spy record --format raw`): where a profiled run spent its samples.

A collapsed-stack line is `frame;frame;…;frame COUNT`, outermost first, each frame `function (file:line)`. Two views:
- self: the innermost frame of each sample, i.e. where the CPU actually was (numpy's C code shows as the Python
  line that called it);
- inclusive, this project's functions only: how much of the run each of our functions (and what it called) took.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    exe = shutil.which("py-spy")
    if exe is None: raise SystemExit("py-spy is not installed: pip install py-spy (the dev extra has it)")
    return exe


def short_file(path: str) -> str:
    "site-packages/…/x.py → package/x.py; this repo's files relative to it."
    for marker in ("site-packages/", "dog_breed_classifier/", "python3.11/", "python3.12/", "python3.10/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("dog_breed_classifier/" + tail) if marker == "dog_breed_classifier/" else tail
    return path


def read_stacks(raw: Path) -> list[tuple[list[tuple[str, str]], int]]:
    "[(frames outermost first as (function, file), samples)] from a py-spy raw file."
    stacks = []
    for line in raw.read_text().splitlines():
        if not line.strip(): continue
        stack, _, count = line.rpartition(" ")
        frames = []
        for f in stack.split(";"):
            m = FRAME.match(f.strip())
            frames.append((m["func"], short_file(m["file"])) if m else (f.strip(), ""))
        stacks.append((frames, int(count)))
    return stacks


def hot_spots(raw: Path, top: int = 10, ours: str = "dog_breed_classifier/") -> dict:
    "Self and inclusive (our functions) shares of the samples in `raw`."
    stacks = read_stacks(raw)
    total = sum(n for _, n in stacks) or 1
    own, inclusive = Counter(), Counter()
    for frames, n in stacks:
        own[frames[-1]] += n
        for f in set(frames):
            if f[1].startswith(ours): inclusive[f] += n
    return dict(samples=total,
                self=[(f"{func} ({file})", n / total) for (func, file), n in own.most_common(top)],
                ours=[(f"{func} ({file})", n / total) for (func, file), n in inclusive.most_common(top)])


def markdown(title: str, spots: dict, notes: list[str]) -> str:
    lines = [f"## {title}", "", *notes, "", f"{spots['samples']} samples.", "",
             "| where the CPU was (self) | share |", "| --- | --- |"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in spots["self"]]
    lines += ["", "| this project's functions (inclusive) | share |", "| --- | --- |"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in spots["ours"]]
    return "\n".join(lines) + "\n"


def record(cmd: list[str], raw: Path, cwd: Path, rate: int = 200, subprocesses: bool = False) -> subprocess.CompletedProcess:
    "Run `cmd` in `cwd` under py-spy, collapsed stacks to `raw`."
    args = [py_spy(), "record", "--format", "raw", "--rate", str(rate), "--output", str(raw), "--nonblocking"]
    if subprocesses: args.append("--subprocesses")
    return subprocess.run([*args, "--", *cmd], capture_output=True, text=True, cwd=cwd)
