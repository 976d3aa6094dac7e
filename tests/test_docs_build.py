"""The docs site builds: nbdev's own docs processing runs over every notebook without an error, a warning or a traceback.

`nbdev-docs` is two steps: nbdev processes each notebook (`nbdev.serve_drv.main` with `FilterDefaults`: it executes
every cell that holds an import, every exported cell and every `show_doc`, adds `show_doc` after exported names and
links backticked names), then Quarto renders the result. Quarto is not installable on these machines, but every
failure seen so far came from the first step — a cell that mixes an import with code using an earlier cell's names
raises `NameError`, since nbdev runs only the import cells. This test runs that step exactly as `nbdev-docs` does
(one fresh process per notebook, from the project root) and checks what it leaves, plus what the pages link to:

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
IMPORT_WARNING = "Found cells containing imports and other code"
PROCESS = """
import sys, warnings
from pathlib import Path
warnings.simplefilter("always")
import nbdev.serve_drv
from nbdev.processors import FilterDefaults
nbdev.serve_drv.main((Path(sys.argv[1]), Path(sys.argv[2]), FilterDefaults))
"""


def process_notebook(src: Path, dst: Path):
    "Run nbdev's docs processing on `src` into `dst` as `nbdev-docs` does: `(returncode, stderr, processed nb)`."
    dst.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "DO_NOT_TRACK": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    r = subprocess.run([sys.executable, "-c", PROCESS, str(src), str(dst)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    return r.returncode, r.stderr, (json.loads(dst.read_text()) if dst.exists() and r.returncode == 0 else None)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    "Every notebook processed, in parallel (each in its own process, as `nbdev-docs` does): `{name: result}`."
    out = tmp_path_factory.mktemp("proc")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda p: process_notebook(p, out / p.relative_to(NBS)), NOTEBOOKS))
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
    rc, stderr, _ = process_notebook(src, tmp_path / "out" / src.name)
    assert rc != 0 and "NameError" in stderr and IMPORT_WARNING in stderr
    cls = tmp_path / "m.ipynb"
    cls.write_text(json.dumps({**nb, "cells": [cell("#| export\nclass A:\n    def go(self): pass\n@patch\ndef b(self: A): pass")]}))
    assert public_methods(cls) == ["A.go", "A.b"] and show_doc_targets(cls) == []
