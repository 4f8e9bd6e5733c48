"""runsc's tracer switch and session: gVisor's trace points by default under runsc, strace when
asked, a usage error for any other value; a clear error when the engine lacks the wrapper
runtime; no sink left when the container does not start; the runtime wrapper's handling of
the pod-init configuration against a stand-in runsc."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from runner.errors import EngineError, UsageError
from runner.policy import Policy, Runtime
from runner.rules.analysis import Collected
from runner.telemetry.gvisor import session


def test_a_sink_nobody_connected_to_is_never_clean() -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        spec = session.adjust(_spec(), Policy(runtime=Runtime.RUNSC), root)
        assert spec.runtime == "runsc-airlock"
        assert spec.environment["AIRLOCK_TRACE"] == "0"
        config = Path(spec.environment[session.CONFIG_ENV])
        assert config.parent == root / "gvisor" and '"remote"' in config.read_text()
        c = Collected(policy=Policy(runtime=Runtime.RUNSC), model=None)  # type: ignore[arg-type]
        assert session.collect(c, root)
        assert b"never connected" in (c.trace_log or b"")
        assert any("never connected" in n for n in c.notes)
        assert not session.collect(c, root)  # once


@pytest.fixture(autouse=True)
def _gvisor_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_RUNSC_TRACER", "gvisor")
    monkeypatch.setattr(session, "_registered", True)  # no engine asked in unit tests


def test_on_by_default_under_runsc_only_and_strace_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _spec()
    assert session.adjust(spec, Policy(runtime=Runtime.RUNC), Path("/nonexistent")) is spec
    assert session.adjust(spec, Policy(runtime=Runtime.RUNSC, trace=False), Path("/x")) is spec
    monkeypatch.delenv("AIRLOCK_RUNSC_TRACER")
    assert session.applies(Policy(runtime=Runtime.RUNSC))  # the default under runsc
    monkeypatch.setenv("AIRLOCK_RUNSC_TRACER", " Strace ")
    assert session.adjust(spec, Policy(runtime=Runtime.RUNSC), Path("/nonexistent")) is spec


def test_an_unknown_tracer_name_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_RUNSC_TRACER", "ptrace")
    with pytest.raises(UsageError, match="AIRLOCK_RUNSC_TRACER='ptrace' is not a tracer") as e:
        session.adjust(_spec(), Policy(runtime=Runtime.RUNSC), Path("/nonexistent"))
    assert "gvisor, strace" in e.value.hint


def test_a_missing_wrapper_runtime_is_a_clear_engine_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from runner.controller import engine

    monkeypatch.setattr(session, "_registered", False)
    monkeypatch.setattr(engine, "engine_info", lambda: {"Runtimes": {"runc": {}, "runsc": {}}})
    with pytest.raises(EngineError, match="no runsc-airlock runtime") as e:
        session.adjust(_spec(), Policy(runtime=Runtime.RUNSC), tmp_path)
    assert "AIRLOCK_RUNSC_TRACER=strace" in e.value.hint
    assert not (tmp_path / "gvisor").exists()  # no sink was started


def test_a_container_that_does_not_start_leaves_no_sink(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from runner.controller import engine, launch, sessions

    def refuse(spec: object) -> str:
        raise EngineError("starting the sandbox: refused", "")

    monkeypatch.setattr(launch, "container_spec", lambda *a: _spec())
    monkeypatch.setattr(engine, "create_and_start", refuse)
    dirs = sessions.SessionDirs(tmp_path, tmp_path / "r", tmp_path / "t", tmp_path / "s")
    with pytest.raises(EngineError, match="refused"):
        launch.start(Policy(runtime=Runtime.RUNSC), "i", "s", dirs, [])
    assert tmp_path not in session._sinks
    assert not session.collect(Collected(policy=Policy(), model=None), tmp_path)  # type: ignore[arg-type]


def _spec():  # type: ignore[no-untyped-def]
    from runner.controller.engine import ContainerSpec

    return ContainerSpec(
        image="i", name="n", command=[], labels={}, runtime="runsc", mounts=[],
        environment={"AIRLOCK_TRACE": "1"}, memory_bytes=1, nano_cpus=1, pids=1, open_files=1,
        tmpfs={}, seccomp_json="{}", cap_add=["SYS_PTRACE", "SETUID", "SETGID"],
    )  # fmt: skip


def test_the_runtime_wrapper_passes_the_config_to_create_and_blanks_it(tmp_path: Path) -> None:
    import json

    fake = tmp_path / "runsc"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    source = Path(__file__).parents[2] / "sandbox_images" / "runsc-airlock"
    wrapper = tmp_path / "runsc-airlock"
    text = source.read_text().replace("RUNSC=/usr/bin/runsc", f"RUNSC={fake}")
    wrapper.write_text(text.replace("PLATFORM=ptrace", "PLATFORM=systrap"))
    wrapper.chmod(0o755)
    config = tmp_path / "pod-init.json"
    config.write_text("{}")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    env = ["PATH=/usr/bin", f"{session.CONFIG_ENV}={config}"]
    (bundle / "config.json").write_text(json.dumps({"process": {"env": env}}))

    def run(*args: str) -> str:
        return subprocess.run([str(wrapper), *args], capture_output=True, text=True).stdout

    created = run("--root", "/r", "create", "--bundle", str(bundle), "c1")
    assert f"--pod-init-config={config} --root /r create" in created
    assert created.startswith("--network=none --host-uds=all --platform=systrap")
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["env"] == ["PATH=/usr/bin", f"{session.CONFIG_ENV}=host"]
    assert "--pod-init-config" not in run("--root", "/r", "start", "c1")
    assert "--pod-init-config" not in run("create", "--bundle", str(bundle), "c2")  # blanked


def test_under_gvisor_the_worker_has_one_malloc_arena_and_keeps_it_through_the_tracer_switch(
    tmp_path: Path,
) -> None:
    """A thread's own malloc arena costs a sentry trip per few pages under gVisor; runc keeps
    glibc's default (one arena there slows small calls)."""
    from runner.controller import launch, sessions

    dirs = sessions.SessionDirs(tmp_path, tmp_path / "run", tmp_path / "trace", tmp_path / "a")
    runc = launch.container_spec(Policy(), "i", "s", dirs, [])
    assert "MALLOC_ARENA_MAX" not in runc.environment
    gvisor = launch.container_spec(Policy(runtime=Runtime.RUNSC), "i", "s", dirs, [])
    assert gvisor.environment["MALLOC_ARENA_MAX"] == "1"
    assert gvisor.environment["AIRLOCK_TRACE"] == "1"  # strace's switches, until adjusted
    adjusted = session.adjust(gvisor, Policy(runtime=Runtime.RUNSC), tmp_path)
    try:
        assert adjusted.environment["MALLOC_ARENA_MAX"] == "1"
        assert adjusted.environment["AIRLOCK_TRACE"] == "0"
        assert not {"AIRLOCK_TRACE_SET", "AIRLOCK_TRACE_REFUSE"} & adjusted.environment.keys()
    finally:
        session.discard(tmp_path)
