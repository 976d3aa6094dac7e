"""The shape of the code, held: imports point down the notebook order, no import cycles, short functions and cells.

Each library module is exported by one numbered notebook (`#| default_exp`); a module may import only modules of
lower-numbered notebooks (`00` < `00a` < `01` …), so the notebooks read — and the docs teach — bottom up. Run
`python tests/test_code_shape.py` to print the figures this test holds.
"""
import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, LIB = ROOT / "nbs", ROOT / "dog_breed_classifier"
MAX_FUNCTION_LINES = 45   # the longest library function or method
MAX_PARAMETERS = 10       # the most parameters of a library function (self and *args/**kwargs not counted)
MAX_CELL_LINES = 40       # the most code lines (not blank, not comments) of an exported cell
MAX_MEAN_CELL_LINES = 14  # their mean over every exported cell
MAX_MULTI_SHARE = 0.10    # exported cells defining more than one function or class (fastcore: one definition a cell)
MIN_EXAMPLE_SHARE = 0.70  # exported cells followed by an example or a test (a `show_doc` call alone is not one)
MAX_OUTPUT_BYTES = 300 * 1024   # committed notebook outputs, all notebooks together: figures as small JPEGs


def _code_cells(nb_path):
    return [c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code"]


def _directives(cell):
    return {m.group(1) for m in re.finditer(r"^#\|\s*(\w+)", "".join(cell["source"]), re.M)}


def notebook_of_module():
    "`{module name: notebook order key}` from each notebook's `#| default_exp`."
    out = {}
    for nb in sorted(NBS.glob("[0-9]*.ipynb")):
        for cell in _code_cells(nb):
            m = re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(cell["source"]), re.M)
            if m: out[m.group(1)] = nb.stem.split("_")[0]
    return out


def library_imports():
    "`{module: {imported library module: first line}}` over every import, module-level or inside a function."
    edges = {}
    for py in sorted(LIB.glob("*.py")):
        if py.stem.startswith("_"): continue
        found = edges.setdefault(py.stem, {})
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1: target = mod.split(".")[0]
                elif mod.startswith("dog_breed_classifier."): target = mod.split(".")[1]
                else: continue
                found.setdefault(target, node.lineno)
    return edges


def import_cycles(edges):
    "Every cycle in the module graph, each as a list of modules."
    cycles, state = [], {}
    def visit(mod, path):
        state[mod] = "open"
        for dep in edges.get(mod, {}):
            if state.get(dep) == "open": cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state: visit(dep, path + [dep])
        state[mod] = "done"
    for mod in edges:
        if mod not in state: visit(mod, [mod])
    return cycles


def upward_imports(edges, order):
    "`module (notebook) → module (notebook)` for each import of a module whose notebook is numbered higher."
    return [f"{m} ({order[m]}) → {d} ({order[d]}) line {line}" for m, deps in edges.items()
            for d, line in deps.items() if d in order and m in order and order[d] > order[m]]


def long_functions(limit=MAX_FUNCTION_LINES, max_parameters=MAX_PARAMETERS):
    "`module.function: …` for each library function or method longer than `limit` lines or with too many parameters."
    out = []
    for py in sorted(LIB.glob("*.py")):
        if py.stem.startswith("_"): continue
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs if a.arg not in ("self", "cls")]
                if n > limit: out.append(f"{py.stem}.{node.name}: {n} lines")
                if len(params) > max_parameters: out.append(f"{py.stem}.{node.name}: {len(params)} parameters")
    return out


def code_lines(source: str) -> int:
    "Lines that are neither blank nor comments (nbdev's `#|` directives are comments)."
    return sum(1 for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def definitions(source: str) -> list[str]:
    "The functions and classes a cell defines at its top level."
    return [n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def is_example(cell) -> bool:
    "A code cell that runs something a reader learns from: shown, not hidden or exported, and not only `show_doc` calls."
    if {"export", "hide"} & _directives(cell): return False
    lines = [line.strip() for line in "".join(cell["source"]).splitlines() if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and not all(line.startswith("show_doc(") for line in lines)


def exported_cells():
    "`(notebook, code lines, followed by a real example or test, definitions)` for each exported cell of the notebooks."
    out = []
    for nb in sorted(NBS.glob("[0-9]*.ipynb")):
        cells = _code_cells(nb)
        for i, cell in enumerate(cells):
            if "export" not in _directives(cell): continue
            followed = i + 1 < len(cells) and is_example(cells[i + 1])
            source = "".join(cell["source"])
            out.append((nb.name, code_lines(source), followed, definitions(source)))
    return out


def module_level_imports() -> dict:
    "`{module: {library modules it imports at module level}}`: what importing it runs."
    out = {}
    for py in sorted(LIB.glob("*.py")):
        if py.stem.startswith("_"): continue
        deps = out.setdefault(py.stem, set())
        for node in ast.parse(py.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level == 1: deps.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dog_breed_classifier."):
                deps.add(node.module.split(".")[1])
    return out


def modules_run_by(notebook: Path) -> set[str]:
    "The library modules a pipeline notebook imports, and everything they import in turn."
    code = "\n".join("".join(c["source"]) for c in _code_cells(notebook))
    todo, seen, graph = re.findall(r"from dog_breed_classifier\.(\w+) import", code), set(), module_level_imports()
    while todo:
        m = todo.pop()
        if m not in seen: seen.add(m); todo += graph.get(m, [])
    return seen


def test_dvc_stages_depend_on_the_modules_they_run():
    import yaml
    stages = yaml.safe_load((ROOT/"dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        m = re.search(r"papermill (nbs/pipeline/\S+\.ipynb)", stage["cmd"])
        if not m: continue
        listed = {Path(d).stem for d in stage["deps"] if d.startswith("dog_breed_classifier/")}
        assert listed == modules_run_by(ROOT/m.group(1)), f"dvc.yaml stage {name}: deps {sorted(listed)}"


def test_module_map_covers_the_library():
    order, modules = notebook_of_module(), {p.stem for p in LIB.glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(order), f"modules without a notebook or notebooks without a module: {modules ^ set(order)}"


def test_no_import_cycles():
    assert import_cycles(library_imports()) == []


def test_imports_point_down_the_notebook_order():
    assert upward_imports(library_imports(), notebook_of_module()) == []


def test_no_long_functions():
    assert long_functions() == []


MAX_LINE = 120   # columns; ruff's E501 holds the library to it too (pyproject.toml names the exceptions)


def long_library_lines(limit=MAX_LINE) -> list[str]:
    "`module:line` for each library line over `limit` columns but nbdev's `__all__ = [` (it wraps the list, not the line)."
    return [f"{py.stem}:{i}" for py in sorted(LIB.glob("*.py")) if not py.stem.startswith("_")
            for i, line in enumerate(py.read_text().splitlines(), 1) if len(line) > limit and not line.startswith("__all__ = [")]


def test_library_lines_fit_120_columns():
    assert long_library_lines() == []


def test_no_long_exported_cells():
    cells = exported_cells()
    assert [(nb, n) for nb, n, *_ in cells if n > MAX_CELL_LINES] == []
    mean = sum(n for _, n, *_ in cells) / len(cells)
    assert mean <= MAX_MEAN_CELL_LINES, f"exported cells hold {mean:.1f} code lines on average"


def test_one_definition_a_cell():
    cells = exported_cells()
    several = [(nb, d) for nb, _, _, d in cells if len(d) > 1]
    assert len(several) / len(cells) <= MAX_MULTI_SHARE, f"{len(several)} of {len(cells)} exported cells: {several}"


def test_exported_cells_are_followed_by_examples():
    cells = exported_cells()
    share = sum(f for _, _, f, _ in cells) / len(cells)
    assert share >= MIN_EXAMPLE_SHARE, f"{share:.0%} of exported cells are followed by an example or a test"


def committed_output_bytes() -> int:
    "Bytes of the outputs stored in the notebooks (what the docs show and every clone carries)."
    return sum(len(json.dumps(o)) for nb in NBS.rglob("*.ipynb") for c in json.loads(nb.read_text())["cells"]
               for o in c.get("outputs", []))


def test_notebook_outputs_stay_light():
    assert committed_output_bytes() <= MAX_OUTPUT_BYTES, f"{committed_output_bytes() / 1024:.0f} KB of notebook outputs"


SERVING_MODULES = ["inference", "answers", "monitoring", "drift", "saliency", "app", "api", "loop", "space"]


def reachable(edges: dict, module: str) -> set[str]:
    "Every library module `module` imports, directly or through others, module-level or inside a function."
    seen, todo = set(), [module]
    while todo:
        for dep in edges.get(todo.pop(), {}):
            if dep not in seen: seen.add(dep); todo.append(dep)
    return seen


def modules_importing(package: str) -> set[str]:
    "The library modules with an `import package` / `from package…` anywhere in them."
    pattern = re.compile(rf"^\s*(from|import) {package}\b", re.M)
    return {py.stem for py in LIB.glob("*.py") if not py.stem.startswith("_") and pattern.search(py.read_text())}


def test_serving_never_reaches_fastai():
    edges, fastai = library_imports(), modules_importing("fastai")
    assert fastai, "no module imports fastai: the check would pass vacuously"
    assert {m: sorted(reachable(edges, m) & fastai) for m in SERVING_MODULES if reachable(edges, m) & fastai} == {}


def test_importing_the_serving_modules_pulls_no_torch():
    import subprocess
    import sys
    code = ("import sys; import " + ", ".join(f"dog_breed_classifier.{m}" for m in SERVING_MODULES) +
            "; print(sorted(m for m in ('torch', 'fastai', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def api_routes() -> set[str]:
    "The REST routes the API module declares (`@router.get(\"/…\")`, `@router.post(…)`)."
    return set(re.findall(r'@router\.(?:get|post)\("(/[^"]*)"', (LIB/"api.py").read_text()))


def test_the_quick_start_names_every_route():
    "The `dog-breed serve` line of the README, the docs home and the serving page lists what the server answers."
    routes = api_routes() - {"/live", "/predict/batch"}   # the liveness probe and the batch form are introduced beside it
    assert {"/predict", "/feedback", "/quality"} <= routes
    for doc in ["README.md", "nbs/index.ipynb", "nbs/serving.qmd"]:
        line = next(l for l in (ROOT/doc).read_text().splitlines() if "dog-breed serve " in l and "127.0.0.1:8000" in l)
        assert {r for r in routes if not re.search(rf"{re.escape(r)}\b", line)} == set(), f"{doc}: {line}"


def test_the_checks_catch_what_they_should():
    assert import_cycles({"a": {"b": 1}, "b": {"a": 2}, "c": {}}) == [["a", "b", "a"]]
    assert upward_imports({"a": {"b": 3}}, {"a": "01", "b": "02"}) == ["a (01) → b (02) line 3"]
    assert upward_imports({"b": {"a": 3}}, {"a": "00a", "b": "01"}) == []
    assert reachable({"a": {"b": 1}, "b": {"c": 2}, "c": {}}, "a") == {"b", "c"}
    assert "train" in modules_importing("fastai")
    assert code_lines("#| export\n# why\n\ndef f(): pass\n") == 1
    assert definitions("X = 1\ndef f(): pass\nclass A: pass\n") == ["f", "A"]


if __name__ == "__main__":
    edges, order, cells = library_imports(), notebook_of_module(), exported_cells()
    print("cycles:", import_cycles(edges))
    print("upward imports:", *upward_imports(edges, order), sep="\n  ")
    print(f"functions over {MAX_FUNCTION_LINES} lines or {MAX_PARAMETERS} parameters:", *long_functions(), sep="\n  ")
    lines = [n for _, n, _, _ in cells]
    print(f"exported cells: {len(cells)}, code lines mean {sum(lines) / len(cells):.1f}, max {max(lines)}; "
          f"more than one definition: {sum(len(d) > 1 for *_, d in cells) / len(cells):.0%}")
    print(f"exported cells followed by an example or test: {sum(f for _, _, f, _ in cells)}/{len(cells)} "
          f"= {sum(f for _, _, f, _ in cells) / len(cells):.0%}")
    print(f"committed notebook outputs: {committed_output_bytes() / 1024:.0f} KB")
    per_nb = {}
    for nb, _, f, _ in cells: per_nb.setdefault(nb, []).append(f)
    for nb, fs in per_nb.items(): print(f"  {nb}: {sum(fs)}/{len(fs)}")


def library_text() -> str:
    return "\n".join(py.read_text() for py in sorted(LIB.glob("*.py")) if not py.stem.startswith("_"))


def test_trained_model_is_read_one_way():
    "Training's model.json is read and written as a `TrainedModel` only: no dict of it read by string key."
    text = library_text()
    assert re.findall(r"\bmeta\[|\bmeta\.get\(", text) == []
    assert text.count('"model.json"') == 2, "model.json: written by train._write_model, read by train.read_trained_model"


def test_settings_declared_once():
    "The upload limit's number and the model comparison's tolerances each live in one place."
    text = library_text() + (ROOT/"app.py").read_text()
    assert len(re.findall(r"10 \* (?:1024 \* 1024|2\*\*20)|10_485_760|\"10mb\"", text)) == 1
    assert re.findall(r"class \w+Settings:[^\n]*\n[^\n]*\n\s+(?:tolerance|max_slowdown)", text) == []   # only Tolerances
    assert text.count("class Tolerances") == 1


MAX_POSITIONAL_FIELDS = 4   # a record with more fields than this is built by keyword: `Breed(name=…, synset=…)`


def wide_records() -> set[str]:
    "The library's dataclasses with more than `MAX_POSITIONAL_FIELDS` fields."
    out = set()
    for py in sorted(LIB.glob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                if sum(isinstance(s, ast.AnnAssign) for s in node.body) > MAX_POSITIONAL_FIELDS: out.add(node.name)
    return out


def positional_records() -> list[str]:
    "`place: Record` for each call that builds a wide record with more than one positional argument."
    wide, sources = wide_records(), {}
    for py in [*LIB.glob("*.py"), *(ROOT/"tests").glob("*.py"), *(ROOT/"benchmarks").glob("*.py"), *(ROOT/"deploy").glob("*.py")]:
        sources[str(py.relative_to(ROOT))] = py.read_text()
    for nb in NBS.rglob("*.ipynb"):
        for i, cell in enumerate(_code_cells(nb)): sources[f"{nb.relative_to(ROOT)} cell {i}"] = "".join(cell["source"])
    out = []
    for where, text in sources.items():
        try: tree = ast.parse(text)
        except SyntaxError: continue
        for node in ast.walk(tree):
            name = getattr(node, "func", None) and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
            if name in wide and len(node.args) > 1: out.append(f"{where}: {name}")
    return out


def test_wide_records_are_built_by_keyword():
    assert positional_records() == []
