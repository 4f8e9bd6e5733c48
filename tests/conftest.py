"""Test tiers, marked by what they need: tests/unit needs no Docker; tests/sandbox,
tests/hostile, tests/packaging and tests/benchmarks are marked `docker` and run against a real
engine and the current sandbox image (they fail, never skip, when either is missing: `make test`
sets both up). `make test-fast` runs `-m "not docker"` with DOCKER_HOST pointing nowhere, so a
test that reaches the engine without its mark fails there. After the whole run, no container
labelled airlock.session and no Airlock temp directory may remain: the session fails otherwise.
"""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER_TIERS = {"sandbox", "hostile", "packaging", "benchmarks"}


def pytest_configure(config: pytest.Config) -> None:
    # A run started with SIGINT ignored (a background job of a shell without job control, as
    # `make test &` is) hands that on to every child it starts: the tests that press Ctrl-C on
    # the CLI need the signal delivered, so the suite starts its children with it restored.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in DOCKER_TIERS for part in item.path.relative_to(ROOT).parts[1:2]):
            item.add_marker(pytest.mark.docker)


def _leaks() -> list[str]:
    import docker

    found = []
    try:
        client = docker.from_env()
        for c in client.containers.list(all=True, filters={"label": "airlock.session"}):
            found.append(f"container {c.name}")
    except docker.errors.DockerException:
        pass
    for d in Path(tempfile.gettempdir()).glob("airlock-*"):
        if (d / "owner.json").exists():
            found.append(f"directory {d}")
    return found


def _uses_docker(session: pytest.Session) -> bool:
    return any("docker" in item.keywords for item in session.items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _uses_docker(session):
        return
    leaks = _leaks()
    if leaks:
        print("\nLEAK: left behind after the test run: " + ", ".join(leaks))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def warm_machine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Before the first Docker test, open one sandbox on a small torch checkpoint, with a load
    deadline far above any test's: on a machine just started or long idle, the image's files
    (torch's libraries) are not in the page cache, and the first sandbox to import torch took
    27-57 s to open, past the tight deadlines some tests set for their hanging fixtures.
    Whether this sandbox opens is for the tests themselves to find out; it only warms the
    machine."""
    if not _uses_docker(request.session):
        return
    import runner
    from tests.fixtures import models

    path = models.state_dict_checkpoint(tmp_path_factory.mktemp("warm"))
    try:
        with runner.Sandbox(path, runner.Policy(load_timeout_s=300)):
            pass
    except Exception as e:  # the tests that need the engine report it
        print(f"warming the machine: {type(e).__name__}: {e}")


@pytest.fixture(scope="session")
def sandbox_image() -> tuple[str, str]:
    """The current image; fails (not skips) when it is missing: run `make image`."""
    from runner.controller import images as _image

    return _image.require_current()


@pytest.fixture(scope="session")
def tensorflow_image(sandbox_image: tuple[str, str]) -> tuple[str, str]:
    """The TensorFlow framework image (tag, id), built once per run when missing: the only
    build of it in the suite (minutes on a fresh machine), shared by every SavedModel test."""
    from runner.controller import framework_images as images

    return images.current_tag("tensorflow"), images.build_locked("tensorflow", print)


from tests.fixtures.pki import pki  # noqa: E402, F401  (a key pair, a CA and a leaf certificate)


@pytest.fixture(autouse=True)
def _fresh_engine_client() -> Iterator[None]:
    """The engine's client is cached for the process (runner.controller.engine.client): each
    test starts and ends with none, so a test that points DOCKER_HOST nowhere gets a client
    for nowhere, whatever ran before it."""
    from runner.controller import engine

    engine.client.cache_clear()
    yield
    engine.client.cache_clear()
