"""`dog-breed serve` as a subprocess on a free 127.0.0.1 port, for the load and throughput benchmarks."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(workdir: Path, *args: str):
    "Yield (base URL, Popen) of a server logging into `workdir`/predictions.db; stop it afterwards."
    port = free_port()
    exe = Path(sys.executable).parent/"dog-breed"
    cmd = [str(exe) if exe.exists() else shutil.which("dog-breed"), "serve", "--port", str(port), "--no-access-log",
           "--store-url", f"sqlite:///{workdir}/predictions.db", *args]
    log = open(workdir/"server.log", "w")
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DO_NOT_TRACK": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None: raise SystemExit(f"server exited: {(workdir/'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200: break
            except httpx.TransportError: pass
            if time.time() > deadline: raise SystemExit("server did not become healthy in 120 s")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()
