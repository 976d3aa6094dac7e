"""The docs site builds: nbdev's own docs processing runs over every notebook without an error, a warning or a traceback.

`nbdev-docs` is two steps: nbdev processes each notebook (`nbdev.serve_drv.main` with `FilterDefaults`: it executes
every cell that holds an import, every exported cell and every `show_doc`, adds `show_doc` after exported names and
links backticked names), then Quarto renders the result. Quarto is not installable on these machines, but every
failure seen so far came from the first step — a cell that mixes an import with code using an earlier cell's names
raises `NameError`, since nbdev runs only the import cells. This test runs that step as `nbdev-docs` does (each
notebook in a process of its own, from the project root; here forked from one that imported the library and its heavy
dependencies once, so 34 notebooks do not import torch 34 times) and checks what it leaves, plus what the pages link to:

- no exception, and no "cells containing imports and other code" warning (imports live in import-only cells);
- no traceback in any output of the processed page;
- every public method of an exported class is documented (`show_doc(Class.method)`), and no `show_doc` repeats
  one nbdev already adds after an exported function or class;
- module names link to their module pages, never to a same-named function; local links in guides resolve.
"""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
IMPORT_WARNING = "Found cells containing imports and other code"
PROCESS = """
import contextlib, io, json, multiprocessing, pkgutil, importlib, sys, traceback, warnings
from pathlib import Path
warnings.simplefilter("always")
import nbdev.serve_drv, dog_breed_classifier
from nbdev.processors import FilterDefaults
if sys.argv[2] == "preload":   # what the notebooks import, imported once
    for m in pkgutil.iter_modules(dog_breed_classifier.__path__): importlib.import_module(f"dog_breed_classifier.{m.name}")

def process(job):
    src, dst = map(Path, job)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try: nbdev.serve_drv.main((src, dst, FilterDefaults)); rc = 0
        except BaseException: traceback.print_exc(); rc = 1
    return rc, err.getvalue()

if __name__ == "__main__":
    jobs = json.loads(sys.stdin.read())
    with multiprocessing.get_context("fork").Pool(int(sys.argv[1]), maxtasksperchild=1) as pool:   # a fresh fork each
        Path(sys.argv[3]).write_text(json.dumps(pool.map(process, jobs, chunksize=1)))
"""


def process_notebooks(jobs: list[tuple[Path, Path]], preload: bool = True) -> list[tuple[int, str, dict | None]]:
    """Run nbdev's docs processing on each `(src, dst)` as `nbdev-docs` does, each notebook in a process of its own
    (forked from one that imported the library once), from the project root: `[(returncode, stderr, processed nb)]`."""
    for _, dst in jobs: dst.parent.mkdir(parents=True, exist_ok=True)
    answers = jobs[0][1].parent / "processing-results.json"
    env = {**os.environ, "WANDB_MODE": "offline", "DO_NOT_TRACK": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    r = subprocess.run([sys.executable, "-c", PROCESS, str(max(2, os.cpu_count() or 2)),
                        "preload" if preload else "bare", str(answers)], cwd=ROOT, env=env,
                       input=json.dumps([[str(s), str(d)] for s, d in jobs]), capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, f"the docs processing runner failed:\n{r.stderr[-3000:]}"
    results = json.loads(answers.read_text())
    return [(rc, err, json.loads(dst.read_text()) if rc == 0 and dst.exists() else None)
            for (rc, err), (_, dst) in zip(results, jobs)]


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    "Every notebook processed, two at a time (each in its own process, as `nbdev-docs` does): `{name: result}`."
    out = tmp_path_factory.mktemp("proc")
    results = process_notebooks([(p, out / p.relative_to(NBS)) for p in NOTEBOOKS])
    return {str(p.relative_to(NBS)): r for p, r in zip(NOTEBOOKS, results)}


def _names(nbs): return [str(p.relative_to(NBS)) for p in nbs]


@pytest.mark.slow
@pytest.mark.parametrize("name", _names(NOTEBOOKS))
def test_docs_processing_runs_clean(processed, name):
    rc, stderr, nb = processed[name]
    assert rc == 0, f"nbdev's docs processing failed on nbs/{name}:\n{stderr[-3000:]}"
    mixed = [chunk.split("---")[1].strip() for chunk in stderr.split(IMPORT_WARNING)[1:]]
    assert not mixed, f"nbs/{name}: move these imports into import-only cells:\n" + "\n…\n".join(mixed)
    for i, cell in enumerate(nb["cells"]):
        for o in cell.get("outputs", []):
            text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
            assert o["output_type"] != "error" and "Traceback (most recent call last)" not in text, \
                f"nbs/{name}, processed cell {i}: a traceback on the page:\n{''.join(cell['source'])[:300]}"


def _markdown(nb): return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def module_pages():
    "`{module: notebook}` from each notebook's `#| default_exp`."
    out = {}
    for nb in NOTEBOOKS:
        for c in json.loads(nb.read_text())["cells"]:
            m = re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(c["source"]), re.M)
            if c["cell_type"] == "code" and m: out[m.group(1)] = nb
    return out


@pytest.mark.slow
def test_module_names_link_to_module_pages(processed):
    "nbdev links a backticked `train` to the function `train`; the index's module column links the module pages."
    mods = module_pages()
    index = _markdown(processed["index.ipynb"][2])
    alternatives = "|".join(map(re.escape, mods))
    to_symbol = re.findall(rf"\[`(?:{alternatives})`\]\([^)]*#[^)]*\)", index)
    assert not to_symbol, f"nbs/index.ipynb: module names linked to functions, not to their pages: {to_symbol}"
    missing = [m for m in mods if not re.search(rf"\[{m}\]\([^)#]*/{m}\.html\)", index)]
    assert not missing, f"nbs/index.ipynb: the module table should link these modules to their pages: {missing}"


MAX_TABLE_COLUMNS = 8   # wider, and the numbers of a table no longer fit the page's column


def _pages():
    "`{page: its Markdown}` for every guide and notebook of the site."
    out = {p.name: p.read_text() for p in sorted(NBS.glob("*.qmd"))}
    return out | {str(p.relative_to(NBS)): _markdown(json.loads(p.read_text())) for p in NOTEBOOKS}


def test_pages_fit_the_column():
    "Tables narrow enough for the page; code lines wrap inside the column rather than being cut off."
    wide = [(page, line[:80]) for page, text in _pages().items() for line in text.splitlines()
            if line.startswith("|") and line.count("|") - 1 > MAX_TABLE_COLUMNS]
    assert not wide, f"tables wider than {MAX_TABLE_COLUMNS} columns (split them): {wide}"
    html = yaml.safe_load((NBS / "_quarto.yml").read_text())["format"]["html"]
    assert html.get("code-overflow") == "wrap", "nbs/_quarto.yml: set format.html.code-overflow: wrap"


LOCAL_LINK = re.compile(r"\]\(((?!https?:|mailto:|#)[^)\s]+)\)")


@pytest.mark.parametrize("page", sorted(p.name for p in NBS.glob("*.qmd")) + ["index.ipynb"])
def test_local_links_resolve(page):
    path = NBS / page
    text = path.read_text() if path.suffix == ".qmd" else _markdown(json.loads(path.read_text()))
    broken = [t for t in LOCAL_LINK.findall(text) if not (NBS / t.split("#")[0]).exists()]
    assert not broken, f"nbs/{page}: links to files that are not in nbs/: {broken}"


def _exported_trees(nb_path):
    for c in json.loads(nb_path.read_text())["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "code" and re.search(r"^#\|\s*exports?\s*$", src, re.M):
            yield from ast.parse(src).body


def _exported_top_names(nb_path):
    return {t.name for t in _exported_trees(nb_path)
            if isinstance(t, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not t.name.startswith("_")}


FASTAI_DISPATCH = {"encodes", "decodes", "setups"}   # a Transform's type-dispatched hooks: show_doc cannot render them


def public_methods(nb_path):
    "`Class.method` for every public method (or property) of an exported class, and every public `@patch`."
    out = []
    for t in _exported_trees(nb_path):
        if isinstance(t, ast.ClassDef) and not t.name.startswith("_"):
            out += [f"{t.name}.{b.name}" for b in t.body
                    if isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef) and not b.name.startswith("_")
                    and b.name not in FASTAI_DISPATCH]
        if isinstance(t, ast.FunctionDef) and not t.name.startswith("_") and any(
                getattr(d, "id", None) == "patch" for d in t.decorator_list):
            out.append(f"{t.args.args[0].annotation.id}.{t.name}")
    return out


def show_doc_targets(nb_path):
    "The names every `show_doc(...)` call in the notebook documents."
    out = []
    for c in json.loads(nb_path.read_text())["cells"]:
        if c["cell_type"] != "code": continue
        for node in ast.walk(ast.parse(re.sub(r"^\s*[%!].*$", "", "".join(c["source"]), flags=re.M))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "show_doc" and node.args:
                out.append(ast.unparse(node.args[0]))
    return out


LIBRARY_NOTEBOOKS = [p for p in NOTEBOOKS if p.parent == NBS and re.match(r"\d", p.name)]


@pytest.mark.parametrize("name", _names(LIBRARY_NOTEBOOKS))
def test_public_methods_are_documented(name):
    nb = NBS / name
    shown = show_doc_targets(nb)
    missing = [m for m in public_methods(nb) if m not in shown]
    assert not missing, f"nbs/{name}: nbdev documents functions and classes, not methods — add show_doc for {missing}"
    repeated = sorted(set(shown) & _exported_top_names(nb))
    assert not repeated, f"nbs/{name}: nbdev already adds show_doc after these exported names — drop: {repeated}"


def test_the_checks_catch_what_they_should(tmp_path):
    "A notebook with an import mixed into code that uses an earlier cell's name fails the processing, as on the site."
    def cell(src): return {"cell_type": "code", "execution_count": None, "id": f"c{abs(hash(src)) % 10**6}",
                           "metadata": {}, "outputs": [], "source": src}
    nb = {"cells": [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": "# broken\n> a page"},
                    cell("#| export\ndef f(): return 1"), cell("x = f()"), cell("import math\nmath.sqrt(x)")],
          "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
          "nbformat": 4, "nbformat_minor": 5}
    src = tmp_path / "broken.ipynb"
    src.write_text(json.dumps(nb))
    [(rc, stderr, _)] = process_notebooks([(src, tmp_path / "out" / src.name)], preload=False)
    assert rc != 0 and "NameError" in stderr and IMPORT_WARNING in stderr
    cls = tmp_path / "m.ipynb"
    cls.write_text(json.dumps({**nb, "cells": [cell("#| export\nclass A:\n    def go(self): pass\n@patch\ndef b(self: A): pass")]}))
    assert public_methods(cls) == ["A.go", "A.b"] and show_doc_targets(cls) == []
