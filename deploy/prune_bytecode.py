#!/usr/bin/env python3
"""Delete the compiled bytecode (.pyc) of the modules a server never imports, keeping every source file.

pip compiles every module it installs; a server imports perhaps a third of them (SQLAlchemy's other dialects, pandas'
readers and plotting, Gradio's other components, NumPy's f2py…). The serving image keeps the bytecode of what
`dog-breed serve` really loads — measured here by building the app around the image's model, answering one photo
and loading uvicorn's protocols — and drops the rest: a module imported later still works, compiled in memory.

    python deploy/prune_bytecode.py MODEL_DIR SITE_PACKAGES      # the serving Dockerfile runs it
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path


def load_what_a_server_loads(model_dir: str):
    "Import what `dog-breed serve` imports, build its app around `model_dir` and answer one generated photo."
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import uvicorn
    from PIL import Image

    from dog_breed_classifier import cli  # noqa: F401  (the entry point)
    from dog_breed_classifier.api import create_app
    from dog_breed_classifier.inference import Predictor
    from dog_breed_classifier.monitoring import PredictionStore
    with tempfile.TemporaryDirectory() as d:
        predictor = Predictor.from_dir(model_dir)
        app = create_app(predictor, PredictionStore(f"sqlite:///{d}/predictions.db"))
        buf = io.BytesIO()
        Image.radial_gradient("L").convert("RGB").resize((320, 240)).save(buf, "JPEG")
        predictor.predict([buf.getvalue()], embeddings=True)
        uvicorn.Config(app, log_level="warning").load()   # the HTTP and lifespan protocol modules


def main(argv: list[str]) -> int:
    model_dir, site = argv
    load_what_a_server_loads(model_dir)
    used = {Path(m.__cached__).resolve() for m in list(sys.modules.values()) if getattr(m, "__cached__", None)}
    kept = dropped = 0
    for pyc in Path(site).rglob("*.pyc"):
        size = pyc.stat().st_size
        if pyc.resolve() in used: kept += size
        else: dropped += size; pyc.unlink()
    print(f"bytecode: kept {kept/1e6:.1f} MB of the modules a server imports, dropped {dropped/1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
