"""The store failing while the server runs, against a real `dog-breed serve`: a real PostgreSQL stopped under load and
started again, and a full disk under the SQLite log (a small tmpfs, remounted larger to recover; root only). In both:
only 200 or 503 (reason store_unavailable, Retry-After), no request waits past the documented bound, the liveness
probe stays 200 while readiness says 503, recovery without restarting the server, and every 200 has its row."""
from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from conftest import REPO, PostgresCluster, Server, jpeg_bytes, new_postgres_database, photo
from dog_breed_classifier.monitoring import STORE_CONNECT_TIMEOUT_SECONDS, STORE_TIMEOUT_SECONDS

pytestmark = pytest.mark.slow   # a real server, a real PostgreSQL stopped and started: not the fast tier

REPORTS = REPO/"reports"/"reliability"
BOUND_S = STORE_TIMEOUT_SECONDS + STORE_CONNECT_TIMEOUT_SECONDS + 2   # the documented wait, plus inference and slack
PHOTO = jpeg_bytes(photo("beagle", 0, (280, 220)))


class Load:
    "`clients` threads posting predictions until stopped: (sent at, status or error, reason, Retry-After, id, seconds)."
    def __init__(self, url: str, clients: int = 4):
        self.url, self.results, self.stop_event = url, [], threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        for t in self.threads: t.start()

    def _client(self):
        with httpx.Client(timeout=60) as c:
            while not self.stop_event.is_set():
                t = time.monotonic()
                try: r = c.post(self.url + "/predict", files={"file": ("dog.jpg", PHOTO, "image/jpeg")})
                except httpx.TransportError as e:
                    self.results.append((t, type(e).__name__, None, None, None, time.monotonic() - t)); continue
                body = r.json()
                self.results.append((t, r.status_code, body.get("reason"), r.headers.get("retry-after"),
                                     body.get("prediction_id"), time.monotonic() - t))

    def stop(self) -> list:
        self.stop_event.set()
        for t in self.threads: t.join(90)
        return self.results


def check_outage(results: list, down_at: float, up_at: float, stored: set, name: str) -> dict:
    "Assert the outage contract on `results`; the figures, also written to reports/reliability/`name`.json."
    statuses = {r[1] for r in results}
    refused = [r for r in results if r[1] == 503]
    acknowledged = {r[4] for r in results if r[1] == 200}
    figures = dict(answers=len(results), ok=len(acknowledged), unavailable=len(refused),
                   slowest_s=round(max(r[5] for r in results), 2), bound_s=BOUND_S,
                   ok_after_recovery=sum(r[1] == 200 for r in results if r[0] > up_at),
                   acknowledged_missing=len(acknowledged - stored))
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS/f"{name}.json").write_text(json.dumps(figures, indent=1))
    print(name, figures)
    assert statuses <= {200, 503}, statuses
    assert refused and all(r[2] == "store_unavailable" and r[3] == "5" for r in refused)
    assert any(r[1] == 503 for r in results if down_at < r[0] < up_at)
    assert figures["slowest_s"] <= BOUND_S, figures
    assert figures["ok_after_recovery"] > 0
    assert not acknowledged - stored, f"{len(acknowledged - stored)} acknowledged predictions have no row"
    return figures


def test_postgresql_stopped_under_load_and_started_again(tmp_path, zero_shot_dir):
    pg = PostgresCluster()
    s = None
    try:
        url = new_postgres_database(pg.url)
        s = Server("--model-dir", zero_shot_dir, "--store-url", url, "--no-ui", cwd=tmp_path)
        load = Load(s.url)
        time.sleep(3)
        pg.stop("fast"); down_at = time.monotonic()
        time.sleep(1.5)
        ready, live = httpx.get(s.url + "/health", timeout=BOUND_S), httpx.get(s.url + "/live")
        time.sleep(5)
        pg.start(); up_at = time.monotonic()
        time.sleep(5)
        results = load.stop()
        ready_again = httpx.get(s.url + "/health", timeout=BOUND_S)
        engine = sa.create_engine(url)
        with engine.connect() as c: stored = {i for (i,) in c.exec_driver_sql("select id from predictions")}
        engine.dispose()
    finally:
        if s is not None: s.stop()
        pg.remove()
    assert (ready.status_code, ready.json()["store_writable"]) == (503, False) and live.status_code == 200
    assert ready_again.status_code == 200
    check_outage(results, down_at, up_at, stored, "postgres_outage")
    assert "Traceback" not in s.log.read_text()


def fill(filler) -> int:
    "Fill the file system holding `filler` (created beforehand, so no new inode is needed) by appending; the bytes written."
    written = 0
    with open(filler, "ab", buffering=0) as f:  # unbuffered: nothing left over for close() to flush into a full disk
        try:
            while True: written += f.write(b"\0" * 65536)
        except OSError as e:
            if e.errno != errno.ENOSPC: raise
    return written


def test_full_disk_under_the_sqlite_log_and_recovery(tmp_path, zero_shot_dir):
    if os.geteuid() != 0 or not shutil.which("mount"): pytest.skip("mounting a small tmpfs needs root (CI runs the tests as root)")
    disk = tmp_path/"disk"; disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    s = None
    try:
        db, filler = disk/"predictions.db", disk/"filler"
        filler.touch()  # before the load: a log that has already filled the disk must not make the filler fail to open
        s = Server("--model-dir", zero_shot_dir, "--store-url", f"sqlite:///{db}", "--no-ui", cwd=tmp_path)
        load = Load(s.url)
        time.sleep(3)
        fill(filler); down_at = time.monotonic()
        time.sleep(5)
        live = httpx.get(s.url + "/live")
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True); up_at = time.monotonic()
        filler.unlink()
        time.sleep(5)
        results = load.stop()
        with sqlite3.connect(db) as c:
            integrity = c.execute("pragma integrity_check").fetchone()[0]
            stored = {i for (i,) in c.execute("select id from predictions")}
    finally:
        if s is not None: s.stop()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    assert live.status_code == 200 and integrity == "ok"
    check_outage(results, down_at, up_at, stored, "disk_full")
    assert "Traceback" not in s.log.read_text()
