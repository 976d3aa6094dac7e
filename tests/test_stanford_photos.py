"""The `stanford` source on real Stanford Dogs photos, when this machine has them (../shared/data); skipped otherwise."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import DEV_PHOTOS, run_cli
from dog_breed_classifier.core import breed_vocab

pytestmark = pytest.mark.slow   # real photos through the CLI: not the fast tier

DEV = DEV_PHOTOS
needs_photos = pytest.mark.skipif(not (DEV/"Images").is_dir(), reason=f"real Stanford photos not present at {DEV}")


@needs_photos
def test_vocabulary_matches_the_stanford_folders():
    "Every Stanford folder name is the `stanford_folder` of exactly one breed of the vocabulary, and back."
    folders = sorted(p.name for p in (DEV/"Images").iterdir() if p.is_dir())
    assert sorted(b.stanford_folder for b in breed_vocab()) == folders
    assert len({breed_vocab().lookup(f).name for f in folders}) == 120


@needs_photos
def test_prepare_the_real_dev_photos(project):
    res = run_cli("prepare", "-q", "-S", "data.source=stanford", "-S", f"data.path={DEV}", "-S", "augment.offline=[]",
                  cwd=project, timeout=600)
    assert res.returncode == 0, res.stderr
    out = project/"data"/"processed"
    summary = json.loads((out/"summary.json").read_text())
    assert summary["breeds"] == 120 and summary["images"]["found"] == 1200
    assert summary["images"]["used"] + summary["images"]["quarantined"] + summary["images"]["duplicates"] == 1200
    assert summary["images"]["used"] >= 1190, summary
    labels = pd.read_csv(out/"labels.csv", keep_default_na=False)
    per_breed = labels.groupby(["breed", "split"]).size().unstack(fill_value=0)
    assert (per_breed.valid >= 1).all() and (per_breed.test >= 1).all()
    stats = pd.read_csv(out/"reference_stats.csv")
    assert len(stats) == summary["images"]["used"] and stats.entropy.between(3, 8).all()
