"""Airlock installed from its wheel, as a user would: a fresh venv outside the checkout, no
dev extras, no PYTHONPATH. The wheel carries the image sources, so it finds the image the
checkout built current, and scanning the demo's malicious pickle contains it.

Run it alone with `pytest tests/packaging -s` to see pip's last line, the image status and the
verdict; it takes a minute or two (most of it installing the dependencies)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.controller import framework_images, images
from tests.fixtures import user_code

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
MARKER = Path("/tmp/airlock-demo-marker")  # what examples/payload.pkl writes when it runs
# what the build reads; the rest of the checkout (tests, docs, venvs, caches) stays behind
BUILD_INPUTS = [
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "runner",
    "sandbox_images",
    "proto",
]
HOST_ONLY = {  # not in the wheel
    "lock.sh",
    "requirements.in",
    "tensorflow/requirements.in",
    "seccomp/generate.py",
    "runsc-airlock",  # the OCI runtime wrapper scripts/engine.sh installs on the host
}
PACKAGED = "runner/controller/image_sources/"


def _run(
    cmd: list[str],
    *,
    timeout: float,
    cwd: Path,
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    took = time.monotonic() - start
    shown = [
        Path(cmd[0]).name,
        *("<code>" if before == "-c" else arg for before, arg in itertools.pairwise(cmd)),
    ]
    print(f"[{took:5.1f} s] {' '.join(shown)} -> {proc.returncode}")
    assert proc.returncode in ok, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@pytest.fixture()
def workdir() -> Iterator[Path]:
    """A temp directory outside the checkout, removed afterwards (the venv is large)."""
    tmp = Path(tempfile.mkdtemp(prefix="wheel-test-"))
    assert ROOT not in tmp.parents
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_wheel(tmp: Path) -> Path:
    """`pip wheel --no-deps` on the checkout's build inputs, copied first: setuptools builds in
    the source tree (build/, *.egg-info), and the checkout is shared; stale build/ leftovers
    could also reach the wheel."""
    src = tmp / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=junk)
        else:
            shutil.copy2(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        timeout=600,
        cwd=tmp,
        env=env,
    )
    print("pip wheel:", _last_line(proc.stdout))
    (wheel,) = (tmp / "dist").glob("airlock-*.whl")
    return wheel


def _check_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = sorted(n.removeprefix(PACKAGED) for n in names if n.startswith(PACKAGED))
    print("image sources in the wheel:", ", ".join(packaged))
    expected = sorted(
        p.relative_to(images.REPO_ROOT / "sandbox_images").as_posix()
        for p in (images.REPO_ROOT / "sandbox_images").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert packaged == [p for p in expected if p not in HOST_ONLY]
    assert "runner/py.typed" in names
    # content_digest hashes every file under runner/worker: the wheel must carry them all
    worker = sorted(n for n in names if n.startswith("runner/worker/"))
    assert worker == [
        f"runner/worker/{p.relative_to(images.WORKER_DIR).as_posix()}"
        for p in images._worker_files()
    ]


def _check_sdist(tmp: Path) -> None:
    """The sdist (MANIFEST.in) carries sandbox_images/ whole, so a wheel built from it can copy
    the image sources too."""
    build = "import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([sys.executable, "-c", build, str(tmp / "sdist")], timeout=300, cwd=tmp / "src", env=env)
    (path,) = (tmp / "sdist").glob("airlock-*.tar.gz")
    with tarfile.open(path) as sdist:
        names = {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()}
    carried = sorted(n for n in names if n.startswith("sandbox_images/"))
    print(
        "sandbox_images in the sdist:",
        ", ".join(n.removeprefix("sandbox_images/") for n in carried),
    )
    assert carried == sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "sandbox_images").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert {"setup.py", "MANIFEST.in", "pyproject.toml"} <= names


@pytest.mark.timeout(3600)  # above the sum of its subprocesses' own timeouts
def test_the_wheel_installs_and_contains_a_payload(
    workdir: Path, sandbox_image: tuple[str, str]
) -> None:
    tag, image_id = sandbox_image
    started = time.monotonic()
    wheel = _build_wheel(workdir)
    _check_contents(wheel)
    _check_sdist(workdir)

    venv = workdir / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120, cwd=workdir)
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            str(wheel),
        ],
        timeout=900,
        cwd=workdir,
        env=pip_env,
    )
    print("pip install:", _last_line(proc.stdout))

    # from here on: a cwd outside the checkout and a clean environment
    home = os.environ.get("HOME", "/root")
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
    }
    env.update({k: os.environ[k] for k in ("DOCKER_HOST", "DOCKER_CONFIG") if k in os.environ})
    cwd = workdir / "user"
    cwd.mkdir()
    probe = (
        "import json, runner.controller.images as i, runner.controller.framework_images as f\n"
        "print(json.dumps({'module': i.__file__, 'sources': str(i.IMAGES_DIR),\n"
        "                  'digest': i.content_digest(), 'tf': f.current_tag('tensorflow')}))\n"
    )
    proc = _run([str(venv / "bin" / "python"), "-c", probe], timeout=60, cwd=cwd, env=env)
    installed = json.loads(proc.stdout)
    site = Path(installed["module"]).parents[2]
    assert venv in site.parents, installed
    assert installed["sources"] == str(site / PACKAGED.rstrip("/")), installed
    assert installed["digest"] == images.content_digest(), "the wheel's image sources differ"
    assert installed["tf"] == framework_images.current_tag("tensorflow"), "the framework's too"
    print(f"content digest, checkout and wheel: {installed['digest'][:16]}")

    airlock = str(venv / "bin" / "airlock")
    proc = _run([airlock, "image", "status"], timeout=60, cwd=cwd, env=env)
    status = next(ln for ln in proc.stdout.splitlines() if ln.startswith("default:"))
    print("image status:", status)
    assert status.split(None, 1)[1].startswith(f"{tag} is current")
    proc = _run([airlock, "image", "build"], timeout=300, cwd=cwd, env=env)
    assert f"{tag} is already current" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == image_id

    model = cwd / "payload.pkl"
    shutil.copy2(ROOT / "examples" / "payload.pkl", model)
    assert not MARKER.exists(), f"{MARKER} exists before the scan: remove it"
    proc = _run([airlock, "scan", str(model), "--json"], timeout=600, cwd=cwd, env=env, ok=(1,))
    report = json.loads(proc.stdout)
    rules = sorted({f["rule"] for f in report["findings"]})
    print(f"scan verdict: {report['verdict']} (exit {proc.returncode}); rules: {', '.join(rules)}")
    assert report["verdict"] == "malicious"
    assert report["sandbox"]["image_id"] == image_id
    assert not MARKER.exists(), "the payload's marker appeared on the host"

    # a user's type checker reads the installed package (its py.typed)
    (workdir / "typing").mkdir()
    errors = user_code.check(
        workdir / "typing", "--python-executable", str(venv / "bin" / "python")
    )
    user_code.assert_sees_real_types(errors)
    print(f"mypy on a user's snippet against the installed wheel: {errors[0]}")
    print(f"total: {time.monotonic() - started:.0f} s")
