#!/usr/bin/env python3
"""Build and start the project's container images with no Docker engine and no registry.

Debian's `buildah` builds both Dockerfiles from a Debian base image that `debootstrap` makes from the apt mirror, and
pip inside the build installs from a wheelhouse that pip fills on this machine (mounted into the RUN steps, nothing
downloaded inside). That is how the tests (tests/test_containers.py) and benchmarks/container_image.py check the
images on a machine that reaches only the package registries, and a recipe for air-gapped builders:

    python deploy/offline_images.py serving --serving-dir models/serving   # build, start, check /health and /predict
    python deploy/offline_images.py serving                                # the same with the zero-shot model
    python deploy/offline_images.py pipeline                               # the pipeline image (torch: large)

Everything it keeps (the image store, the base's root filesystem, the wheelhouses) lives under
~/.cache/dog_breed_classifier/containers, or DOG_BREED_IMAGE_CACHE: the base and the wheels are made once. debootstrap
and buildah's chroot isolation need root. With a Docker engine and a registry, use the Dockerfiles directly (README).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dog_breed_classifier.measure import ServerStartError, Stopwatch, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[1]
BASE_TAG = "localhost/dog-breed-base:bookworm"
SERVING_LOCKS = ("serve-openvino.lock", "serve-onnxruntime.lock", "drift.lock", "build.lock")   # what the Dockerfile installs
PYTHON_LABEL = "org.dog-breed-classifier.python-version"
SUITE = "bookworm"   # Debian 12: Python 3.11, the version the wheelhouse is made for (this machine's)
# python3-venv gives each image's virtual environment its pip (ensurepip), so python3-pip is not needed
BASE_PACKAGES = ["python3", "python3-venv", "ca-certificates"]
# the parts of a Debian root filesystem no container needs: package archives and lists, documentation, translations
BASE_TRIM = ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
             "usr/share/info"]
# what a build context holds: the files the .dockerignore lets through (models/serving aside)
BUILD_CONTEXT = ["pyproject.toml", "README.md", "Dockerfile", "Dockerfile.train", ".dockerignore", "requirements",
                 "deploy/prune_bytecode.py", "dog_breed_classifier"]


class ImageBuildError(RuntimeError):
    "A step of making, building or starting an image failed; the message says which and shows its output's end."


def default_cache() -> Path:
    return Path(os.environ.get("DOG_BREED_IMAGE_CACHE") or Path.home()/".cache/dog_breed_classifier/containers")


def missing_tools() -> list[str]:
    "The Debian packages this needs that are not installed (`apt-get install buildah debootstrap`)."
    return [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]


def debian_mirror() -> str:
    "The Debian mirror this machine's apt uses (deb822 sources or sources.list), or deb.debian.org."
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file(): continue
        text = path.read_text(errors="replace")
        found = re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\b", text, re.M)
        for uri in found:
            if uri.rstrip("/").endswith("/debian"): return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class ImageStore:
    "buildah with a store of its own (vfs: works without overlay mounts, in containers and sandboxes)."
    cache: Path

    def command(self, *args) -> list[str]:
        return ["buildah", "--root", str(self.cache/"storage"), "--runroot", str(self.cache/"run"),
                "--storage-driver", "vfs", *map(str, args)]

    def __call__(self, *args, timeout: float | None = None, log: Path | None = None) -> str:
        "Run buildah; its output, or an `ImageBuildError` with the end of it (the whole of it in `log`)."
        res = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)
        if log is not None: log.write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            raise ImageBuildError(f"buildah {args[0]} failed (exit {res.returncode}):\n{_tail(res.stdout + res.stderr)}")
        return res.stdout

    def has_image(self, tag: str) -> bool:
        res = subprocess.run(self.command("images", "--quiet", tag), capture_output=True, text=True)
        return res.returncode == 0 and bool(res.stdout.strip())

    def config(self, tag: str) -> dict:
        "The image's run settings (User, Env, Cmd, ExposedPorts, Volumes, Healthcheck…), Docker format."
        return json.loads(self("inspect", "--type", "image", tag))["Docker"]["config"]

    def size(self, tag: str) -> int:
        "The image's size in bytes, unpacked (what `docker images` shows): its layers' sizes added up."
        if shutil.which("podman"):   # podman reads the same store and reports bytes
            res = subprocess.run(["podman", "--root", str(self.cache/"storage"), "--runroot", str(self.cache/"run"),
                                  "--storage-driver", "vfs", "image", "inspect", "--format", "{{.Size}}", tag],
                                 capture_output=True, text=True)
            if res.returncode == 0: return int(res.stdout.strip())
        row = json.loads(self("images", "--json", tag))[0]   # "1.54 GB": buildah prints only a rounded size
        number, unit = row["size"].split()
        return int(float(number)*{"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit])

    def remove_image(self, tag: str):
        with contextlib.suppress(ImageBuildError): self("rmi", "--force", tag)
        with contextlib.suppress(ImageBuildError): self("rmi", "--prune")   # the untagged stages it leaves


def make_base_image(store: ImageStore, mirror: str | None = None, progress=print) -> str:
    "The Debian base image (`BASE_TAG`), made once with debootstrap from the apt mirror; later calls reuse it."
    if store.has_image(BASE_TAG): return BASE_TAG
    if os.geteuid() != 0: raise ImageBuildError("debootstrap needs root: run this as root (or under sudo)")
    mirror = mirror or debian_mirror()
    progress(f"making the {SUITE} base image with debootstrap from {mirror} (about a minute)…")
    with tempfile.TemporaryDirectory(dir=store.cache) as tmp:
        rootfs, context = Path(tmp)/"rootfs", Path(tmp)/"context"
        res = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
                              str(rootfs), mirror], capture_output=True, text=True)
        if res.returncode != 0:
            raise ImageBuildError(f"debootstrap from {mirror} failed (exit {res.returncode}):\n{_tail(res.stdout + res.stderr)}")
        for part in BASE_TRIM:
            for child in (rootfs/part).glob("*"):
                if child.is_dir() and not child.is_symlink(): shutil.rmtree(child)
                else: child.unlink()
        version = subprocess.run(["chroot", str(rootfs), "python3", "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        context.mkdir()
        with tarfile.open(context/"rootfs.tar", "w") as tar: tar.add(rootfs, arcname=".")
        (context/"Dockerfile").write_text(f'FROM scratch\nADD rootfs.tar /\nLABEL {PYTHON_LABEL}="{version}"\nCMD ["python3"]\n')
        store("build", "--isolation", "chroot", "--tag", BASE_TAG, str(context))
    return BASE_TAG


def base_python(store: ImageStore) -> str | None:
    "The Python version in the base image (its label), e.g. '3.11.2'."
    labels = json.loads(store("inspect", "--type", "image", BASE_TAG))["OCIv1"]["config"].get("Labels") or {}
    return labels.get(PYTHON_LABEL)


def _fill(wheels: Path, key: str, commands: list[list[str]], progress) -> Path:
    "Run the pip `commands` into a partial folder, then publish it as `wheels` (complete or not at all)."
    progress(f"filling the wheelhouse {wheels} with pip (once per {key})…")
    partial = wheels.with_name(wheels.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=wheels.parent) as tmp:
        for command in commands:
            res = subprocess.run([sys.executable, "-m", "pip", *command, "--quiet"], capture_output=True, text=True, cwd=tmp,
                                 env={**os.environ, "PIP_CONSTRAINT": ""})   # this machine's own pip constraint aside
            if res.returncode != 0:
                raise ImageBuildError(f"pip {command[0]} failed (exit {res.returncode}):\n{_tail(res.stdout + res.stderr)}")
    for own in partial.glob("dog_breed_classifier-*.whl"): own.unlink()
    shutil.rmtree(wheels, ignore_errors=True)
    partial.rename(wheels)
    (wheels/".complete").touch()
    return wheels


def serving_wheelhouse(store: ImageStore, progress=print) -> Path:
    """The wheels of the serving image's hashed locks (both runtimes, the drift job, the build tools), for the base
    image's Python: `pip download` of exactly the locked files, so `--require-hashes` accepts them in the build."""
    python = base_python(store)
    locks = [REPO/"requirements"/name for name in SERVING_LOCKS]
    key = hashlib.sha256("\n".join([python, *(p.read_text() for p in locks)]).encode()).hexdigest()[:16]
    wheels = store.cache/"wheels"/f"serve-{key}"
    if (wheels/".complete").exists(): return wheels
    wheels.parent.mkdir(parents=True, exist_ok=True)
    partial = str(wheels.with_name(wheels.name + ".partial"))
    return _fill(wheels, "lock", [["download", "--dest", partial, "--require-hashes", "--no-deps", "--only-binary=:all:",
                                   "--python-version", python, "-r", str(lock)] for lock in locks], progress)


def constraints_for(python: str, folder: Path) -> Path:
    """requirements/constraints.txt with every marker decided for the image's `python`, written into `folder`: pip
    decides a constraint's marker for the Python it runs on, not for `--python-version`, so the line meant for
    3.11.2 (soupsieve 2.10, say) would lose to the one meant for this machine's 3.11.7 and the resolver backtrack."""
    from packaging.markers import Marker
    env = {"python_full_version": python, "python_version": ".".join(python.split(".")[:2])}
    pins = []
    for line in (REPO/"requirements"/"constraints.txt").read_text().splitlines():
        spec, _, marker = line.split("#", 1)[0].partition(";")
        if spec.strip() and (not marker.strip() or Marker(marker.strip()).evaluate(env)): pins.append(spec.strip())
    out = folder/"constraints.txt"
    out.write_text("\n".join(pins) + "\n")
    return out


def make_wheelhouse(store: ImageStore, extras: str, also: tuple[str, ...] = (), progress=print) -> Path:
    """A folder of wheels for the project's `extras` (and the requirements in `also`) and what they need, pinned by
    requirements/constraints.txt, for the base image's Python, made by this machine's pip (its index and settings);
    reused while they and the constraints are unchanged. The project's own wheel is left out: the Dockerfiles build
    it from their context.

    Two passes, because this machine's Python is not the image's (3.11.7 here, Debian 12's 3.11.2): `pip wheel`
    builds the wheels of packages published only as source (antlr4-python3-runtime, under DVC), then `pip download
    --python-version` adds, from those and the index, versions that the image's Python accepts (the newest soupsieve
    wants ≥ 3.11.5). pip builds from a copy of the project, so no build/ folder lands in the working tree."""
    python = base_python(store)
    constraints = REPO/"requirements"/"constraints.txt"
    key = hashlib.sha256("\n".join([python, extras, *also, (REPO/"pyproject.toml").read_text(),
                                    constraints.read_text()]).encode()).hexdigest()[:16]
    wheels = store.cache/"wheels"/key
    if (wheels/".complete").exists(): return wheels
    partial = str(wheels.with_name(key + ".partial"))
    wheels.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels.parent) as tmp:
        project = copy_project(Path(tmp)/"project")
        # pyproject.toml's build-system (the image's `pip install .`) and pip
        wanted = [f"{project}[{extras}]", *also, "setuptools>=77", "wheel", "pip", "-c", str(constraints_for(python, Path(tmp)))]
        return _fill(wheels, "pyproject.toml and constraints.txt", [
            ["wheel", "--wheel-dir", partial, *wanted],
            ["download", "--dest", partial, "--find-links", partial, "--python-version", python, "--only-binary=:all:", *wanted]],
            progress)


def copy_project(folder: Path) -> Path:
    "What the .dockerignore lets through to a build (pyproject.toml, README.md, the package, the Dockerfiles)."
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in BUILD_CONTEXT:
        src = REPO/name
        (folder/name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir(): shutil.copytree(src, folder/name, ignore=shutil.ignore_patterns("__pycache__"))
        else: shutil.copy2(src, folder/name)
    return folder


def serving_context(folder: Path, serving_dir: Path | None) -> Path:
    """The serving image's build context: the project's files a build may read, and `serving_dir` (an exported
    model) as models/serving. A folder of its own, so a build never reads or writes the working tree's models."""
    copy_project(folder)
    if serving_dir is not None:
        if not (Path(serving_dir)/"model_card.json").is_file():
            raise ImageBuildError(f"{serving_dir} has no model_card.json: export a model first (dvc repro, or dog-breed export)")
        shutil.copytree(serving_dir, folder/"models/serving")
    return folder


def build_image(store: ImageStore, dockerfile: Path, context: Path, tag: str, wheels: Path, *,
                build_args: dict | None = None, log: Path | None = None, timeout: float = 3600) -> float:
    "Build `dockerfile` on the base image with pip reading only `wheels`; the seconds it took."
    args = {"BASE_IMAGE": BASE_TAG, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels", **(build_args or {})}
    target = ["--target", args.pop("TARGET")] if "TARGET" in args else []
    start = Stopwatch()
    # docker format: OCI images have no HEALTHCHECK; --pull=never: the base is local, nothing to fetch
    store("build", "--format", "docker", "--isolation", "chroot", "--pull=never", "--file", dockerfile, *target,
          "--tag", tag, "--volume", f"{wheels}:/wheels:ro",
          *[a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")], context, timeout=timeout, log=log)
    return start.seconds


def build_serving_image(store: ImageStore, serving_dir: Path, tag: str, work: Path, log: Path | None = None,
                        build_args: dict | None = None) -> float:
    """The serving image with the exported model `serving_dir` baked in (SERVING_DIR), context in `work`; buildah's
    seconds. `build_args`: RUNTIME=onnxruntime, or TARGET=drift for the drift job's image."""
    wheels = serving_wheelhouse(store)
    context = serving_context(work/"context", serving_dir)
    return build_image(store, context/"Dockerfile", context, tag, wheels, log=log,
                       build_args={"SERVING_DIR": "models/serving", **(build_args or {})})


def build_pipeline_image(store: ImageStore, tag: str, work: Path, log: Path | None = None) -> float:
    "The pipeline image (torch, fastai, DVC, papermill), context in `work`; buildah's seconds."
    wheels = make_wheelhouse(store, "pipeline", ("torch", "torchvision"))
    context = copy_project(work/"context")
    return build_image(store, context/"Dockerfile.train", context, tag, wheels, log=log)


@dataclass
class RunningContainer:
    "A container of `image` started with its own command, user and environment, on this machine's network."
    store: ImageStore
    name: str
    url: str
    process: subprocess.Popen
    log: Path
    started_at: float
    data: Path   # the host folder mounted at /data (the SQLite prediction log, by default)

    def host_path(self, inside: str) -> Path:
        """Where the container's file `inside` lies on this machine. Under /data: the folder mounted there, or — buildah
        gives a path the image declares a VOLUME its own anonymous volume — that volume's folder; else its root filesystem."""
        rest = inside.removeprefix("/data/")
        if rest != inside:
            cid = json.loads(self.store("inspect", "--type", "container", self.name))["ContainerID"]
            volumes = self.store.cache/"storage"/"vfs-containers"/cid/"userdata"/"buildah-volumes"
            found = [p for p in [self.data/rest, *volumes.glob(f"*/{rest}")] if p.exists()]
            if found: return found[0]
        return Path(self.store("mount", self.name).strip())/inside.lstrip("/")

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        "Run another command in the container (a new process in its filesystem, like `docker exec`)."
        return subprocess.run(self.store.command("run", "--isolation", "chroot", self.name, "--", *command),
                              capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def start_container(store: ImageStore, tag: str, *, port: int | None = None, env: dict | None = None,
                    log: Path, timeout: float = 180, reuse: str | None = None) -> Iterator[RunningContainer]:
    """Start `tag` as a container runtime would: its Cmd, User, Env and WorkingDir, on a free loopback port (PORT),
    with a fresh /data volume; wait for /health; stop and remove it afterwards. `reuse`: the name of a container of
    `tag` that is already unpacked (a second server in it; not removed here) — on vfs storage, unpacking copies the
    whole image (~30 s for the serving image).

    `buildah run --isolation chroot`, not podman: podman's runtime (crun) must set resource limits, which sandboxes
    such as these machines' refuse ('setrlimit RLIMIT_NPROC: Operation not permitted'). chroot isolation shares the
    host's network, so the server is reached on 127.0.0.1."""
    config = store.config(tag)
    port = port or free_port()
    name = reuse or f"dog-breed-{port}"
    if not reuse: store("from", "--pull=never", "--name", name, tag)
    data = Path(tempfile.mkdtemp(prefix="dog-breed-data-", dir=store.cache))
    user = str(config.get("User") or "0").split(":")[0]
    if user.isdigit(): os.chown(data, int(user), -1)   # a named volume: owned by the image's user, like Docker's
    try:
        envs = {**(env or {}), "PORT": str(port)}
        command = store.command("run", "--isolation", "chroot", "--volume", f"{data}:/data",
                                *[a for k, v in envs.items() for a in ("--env", f"{k}={v}")], name, "--", *config["Cmd"])
        started_at = time.monotonic()
        with open(log, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            try: wait_healthy(url, started_at + timeout - time.monotonic(), process, log, ready=True)
            except ServerStartError as e: raise ImageBuildError(str(e)) from None
            yield RunningContainer(store, name, url, process, log, started_at, data)
        finally:
            _stop(process)
    finally:
        if not reuse:
            with contextlib.suppress(ImageBuildError): store("rm", name)
        shutil.rmtree(data, ignore_errors=True)


def _stop(process: subprocess.Popen):
    "SIGTERM to the container's processes (buildah and the server it started), SIGKILL if they linger."
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError): os.killpg(process.pid, sig)
        try:
            process.wait(wait); return
        except subprocess.TimeoutExpired: continue


def run_in_image(store: ImageStore, tag: str, command: list[str], *, mounts: dict[Path, str] | None = None,
                 workdir: str | None = None, log: Path, timeout: float = 3600) -> subprocess.CompletedProcess:
    "Run `command` in a new container of `tag` (like `docker run --rm -v …`), its output in `log`; then remove it."
    name = f"dog-breed-run-{os.getpid()}-{time.monotonic_ns()}"
    store("from", "--pull=never", "--name", name, tag)
    try:
        args = [a for src, dest in (mounts or {}).items() for a in ("--volume", f"{src}:{dest}")]
        if workdir: args += ["--workingdir", workdir]
        with open(log, "w") as out:
            return subprocess.run(store.command("run", "--isolation", "chroot", *args, name, "--", *command),
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    finally:
        with contextlib.suppress(ImageBuildError): store("rm", name)


def fresh_clone(dest: Path) -> Path:
    "The repository's committed and new (not ignored) files in a fresh git repository at `dest` (DVC needs git)."
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO/name).is_file():
            (dest/name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO/name, dest/name)
    for command in (["init", "-q"], ["add", "-A"],
                    ["-c", "user.name=offline-images", "-c", "user.email=offline@example.invalid", "commit", "-qm", "clone"]):
        subprocess.run(["git", *command], cwd=dest, check=True, capture_output=True)
    return dest


# --- the command line -------------------------------------------------------------------------------------------


def _photo_jpeg() -> bytes:
    "A generated 224×224 photo-like JPEG (no test data needed)."
    from io import BytesIO

    from PIL import Image
    buf = BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((224, 224)).save(buf, "JPEG")
    return buf.getvalue()


def post_photo(url: str, jpeg: bytes) -> dict:
    "POST one photo to /predict (multipart, field `file`); the answer's JSON."
    boundary = "dog-breed-" + hashlib.sha1(jpeg).hexdigest()[:12]
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/predict", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as answer: return json.load(answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", choices=["serving", "pipeline"])
    parser.add_argument("--serving-dir", type=Path, help="an exported model to bake in (default: the zero-shot model)")
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--tag", help="default: localhost/dog-breed-serve:offline or localhost/dog-breed-train:offline")
    args = parser.parse_args(argv)
    if missing := missing_tools():
        print(f"missing: {', '.join(missing)} — install them with: apt-get install {' '.join(missing)}", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    store = ImageStore(args.cache)
    try:
        make_base_image(store)
        if args.image == "serving":
            tag = args.tag or "localhost/dog-breed-serve:offline"
            serving_dir = args.serving_dir
            with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
                if serving_dir is None:
                    from dog_breed_classifier.export import build_zero_shot_serving_dir
                    print("exporting the zero-shot model (torch runs here, not in the image)…")
                    serving_dir = build_zero_shot_serving_dir(Path(tmp)/"zero_shot")
                print(f"building {tag}…")
                seconds = build_serving_image(store, serving_dir, tag, Path(tmp), log=args.cache/"serving-build.log")
            print(f"built {tag} in {seconds:.0f} s, {store.size(tag)/1e6:.0f} MB")
            with start_container(store, tag, log=args.cache/"serving-run.log") as box:
                print(f"{box.url}/health: healthy after {time.monotonic() - box.started_at:.1f} s")
                answer = post_photo(box.url, _photo_jpeg())
                print(f"/predict: {answer['top_k'][0]}")
        else:
            tag = args.tag or "localhost/dog-breed-train:offline"
            print(f"building {tag} (torch: several GB, many minutes)…")
            with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
                seconds = build_pipeline_image(store, tag, Path(tmp), log=args.cache/"pipeline-build.log")
                print(f"built {tag} in {seconds:.0f} s, {store.size(tag)/1e6:.0f} MB")
                clone = fresh_clone(Path(tmp)/"repo")
                print(f"dvc repro inside {tag}, on a fresh clone mounted at /work…")
                log = args.cache/"pipeline-repro.log"
                started = Stopwatch()
                res = run_in_image(store, tag, ["dvc", "repro"], mounts={clone: "/work"}, workdir="/work", log=log)
                if res.returncode != 0: raise ImageBuildError(f"dvc repro failed in the image:\n{_tail(log.read_text())}")
                print(f"dvc repro: {started.seconds:.0f} s, models/serving: "
                      f"{sorted(p.name for p in (clone/'models/serving').iterdir())}")
    except ImageBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    push = " ".join(store.command("push", tag, f"docker-archive:{tag.rsplit('/', 1)[-1].replace(':', '-')}.tar"))
    print(f"the image stays in {args.cache}/storage; to carry it to a Docker engine or a registry:\n  {push}\n"
          "  docker load -i <that file>    (or push to docker://REGISTRY/NAME:TAG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
