"""Upload → answer time of the Gradio demo in a real browser, with and without the why-this-breed heatmap.

Starts `dog-breed serve` twice on the zero-shot model — once with its torch weights (heatmap by Grad-CAM), once
without (occlusion on the ONNX model, as in the slim image or a Space) — and drives headless Chromium (Debian's,
through Playwright) at /ui: each photo is uploaded, and the time is taken from handing the file to the page until
the page shows the logged answer (and, with the heatmap on, the heatmap). Heatmap off and on alternate photo by
photo, so the machine's noise hits both alike; the ratios are from the same run.

    python benchmarks/ui_latency.py [--runs 9] [--docs-screenshot nbs/images/ui_demo.png]

Photos: the Stanford dev photos when ../shared has them, else the library's drawings. Needs `apt-get install chromium`."""
from __future__ import annotations

import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from benchmark_io import REPO, argument_parser
from dog_breed_classifier.core import stanford_photos
from dog_breed_classifier.data import draw_sample_dog
from dog_breed_classifier.export import build_zero_shot_serving_dir
from dog_breed_classifier.measure import LocalServer, Stopwatch, sample_photos

DEV = (stanford_photos(root=REPO) or Path("nowhere"))/"Images"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def prediction_id(headline: str) -> str | None:
    "The id of the logged prediction a headline shows (None before the first answer)."
    m = re.search(r"logged as ([0-9a-f]{32})", headline)
    return m.group(1) if m else None


def upload(page, path: Path, heatmap: bool) -> tuple[float, float]:
    "Seconds from handing `path` to the page until the answer (and the heatmap, when on) shows."
    before = prediction_id(page.inner_text("#headline"))
    old_src = page.evaluate("() => { const i = document.querySelector('#heatmap img'); return i ? i.src : ''; }")
    t = Stopwatch()
    page.set_input_files("#photo input[type=file]", str(path))
    page.wait_for_function("b => { const m = (document.querySelector('#headline') || {innerText: ''}).innerText.match(/logged as ([0-9a-f]{32})/); "
                           "return m !== null && m[1] !== b; }", arg=before, timeout=120_000)
    label = t.seconds
    if heatmap:   # the new heatmap picture loaded and drawn
        page.wait_for_function("s => { const i = document.querySelector('#heatmap img'); return i && i.src !== s && i.complete "
                               "&& i.naturalWidth > 0; }", arg=old_src, timeout=120_000)
    return label, t.seconds


def measure(browser, url: str, files: list[Path], screenshot: Path | None, drawn: Path | None = None,
            docs_screenshot: Path | None = None) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url + "/ui/")
    page.wait_for_selector("#photo input[type=file]", state="attached", timeout=60_000)
    upload(page, files[-1], False)   # warm-up: the first call loads what is loaded lazily
    off, on, label_on, costs = [], [], [], []
    for i, f in enumerate(files):
        want = i % 2 == 1
        if page.is_checked("#show-why input[type=checkbox]") != want:   # toggle, and let the toggle's own event finish
            page.click("#show-why input[type=checkbox]")
            page.wait_for_function("w => document.querySelector('#heatmap-cost').innerText.startsWith(w ? 'Heatmap: ' : 'Heatmap off')",
                                   arg=want, timeout=120_000)
        label, total = upload(page, f, want)
        (on if want else off).append(total)
        if want: label_on.append(label)
        if want: costs.append(page.inner_text("#heatmap-cost"))
    if screenshot:
        screenshot.parent.mkdir(parents=True, exist_ok=True); page.screenshot(path=str(screenshot), full_page=True)
    if drawn:   # the heatmap is on after the last (odd) upload
        upload(page, drawn, True); time.sleep(0.5)
        page.set_viewport_size({"width": 1280, "height": 820}); page.screenshot(path=str(docs_screenshot))
    page.close()
    return dict(off=off, on=on, label_on=label_on, cost=costs[-1] if costs else "")


def main():
    ap = argument_parser(__doc__)
    ap.add_argument("--runs", type=int, default=9, help="uploads per mode (heatmap off / on) and model folder")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--docs-screenshot", type=Path, help="also save a screenshot of a drawing with its heatmap here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        full = build_zero_shot_serving_dir(d/"zero_shot")
        slim = d/"zero_shot_slim"; shutil.copytree(full, slim); (slim/"model.safetensors").unlink()
        files = [d/f"{i}.jpg" for i in range(2 * a.runs)]   # real photos spread over the breeds, else drawings
        for f, data in zip(files, sample_photos(len(files), DEV.parent, size=(400, 340))): f.write_bytes(data)
        print(f"{len(files)} photos ({'Stanford dev' if DEV.is_dir() else 'drawn'}), Chromium {a.chromium}", file=sys.stderr)
        results = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
            for name, folder in [("grad-cam (torch weights present)", full), ("occlusion (ONNX only)", slim)]:
                work = d/name.split()[0]; work.mkdir()
                with LocalServer("--store-url", f"sqlite:///{work}/predictions.db", "--model-dir", folder, "--drift-refresh", "0", cwd=work, ready=True) as s:
                    url = s.url
                    drawn = None
                    if a.docs_screenshot and name.startswith("grad-cam"):   # a drawing: no Stanford photo goes into the docs
                        drawn = d/"drawn_beagle.jpg"; draw_sample_dog("beagle", np.random.default_rng(3), (400, 340)).save(drawn)
                    results[name] = measure(browser, url, files, REPO/"reports"/"ui"/f"benchmark-{name.split()[0]}.png", drawn,
                                            a.docs_screenshot)
            browser.close()
    print(f"\nUpload → answer in the browser, median of {a.runs} uploads per mode (seconds)")
    print("off: answer shown, heatmap off; on: answer and heatmap picture shown (answer alone: 'label')")
    print(f"{'heatmap method':36} {'off':>6} {'label':>6} {'on':>6} {'on/off':>7}   heatmap cost (last, server side)")
    for name, r in results.items():
        off, label, on = (statistics.median(r[k]) for k in ("off", "label_on", "on"))
        print(f"{name:36} {off:6.3f} {label:6.3f} {on:6.3f} {on / off:7.2f}   {r['cost']}")


if __name__ == "__main__":
    main()
