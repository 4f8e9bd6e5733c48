"""Housekeeping: the sandbox image, leftovers, the environment's health, the version."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from runner import __version__
from runner.cli.options import JsonOut
from runner.cli.output import note, out
from runner.errors import EXIT_ERROR, EXIT_OK

Force = Annotated[bool, typer.Option("--force", help="rebuild even when current")]
All = Annotated[
    bool, typer.Option("--all", help="also remove sandboxes whose owner is still running")
]


def image_build(force: Force = False) -> None:
    """Build the sandbox image offline (the base is bootstrapped when no registry answers)."""
    from runner.controller import images as _image

    image = _image.build(note, force)
    out.print(image, markup=False, highlight=False)


def image_status(json_: JsonOut = False) -> None:
    """Say whether the sandbox image is current. Exit 0 when it is, 3 otherwise."""
    from runner.controller import images as _image

    st = _image.status()
    if json_:
        out.print_json(
            json.dumps(
                {
                    "state": st.state.value,
                    "tag": st.tag,
                    "image_id": st.image_id,
                    "other_tags": st.other_tags,
                }
            )
        )
    else:
        out.print(st.describe(), markup=False, highlight=False)
    raise typer.Exit(EXIT_OK if st.state is _image.ImageState.CURRENT else EXIT_ERROR)


def gc(all_: All = False) -> None:
    """Remove sandboxes and directories left behind by a controller that was killed."""
    from runner.controller import sessions as _session

    reaped = _session.reap(everything=all_)
    out.print(
        f"removed {len(reaped.containers)} container(s) and "
        f"{len(reaped.directories)} directory(ies)",
        markup=False,
    )


def doctor() -> None:
    """Check the engine, the runtimes and the image; print the fix for each problem."""
    from runner.controller import engine as _docker
    from runner.controller import images as _image
    from runner.errors import EngineError

    problems = 0

    def line(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        problems += 0 if ok else 1
        mark = "ok  " if ok else "FAIL"
        out.print(
            f"{mark} {what}" + ("" if ok else f"\n     fix: {fix}"), markup=False, highlight=False
        )

    try:
        info = _docker.engine_info()
    except EngineError as e:
        line(False, "Docker engine reachable", e.hint)
        raise typer.Exit(EXIT_ERROR) from None
    line(True, f"Docker engine reachable (server {info.get('ServerVersion', '?')})")
    runtimes = info.get("Runtimes") or {}
    line("runc" in runtimes, "runtime runc registered", "reinstall docker.io")
    runsc = runtimes.get("runsc") or {}
    args = runsc.get("runtimeArgs") or []
    line(bool(runsc), "runtime runsc (gVisor) registered", "run 'make engine'")
    if runsc:
        line(
            any(a.startswith("--host-uds") for a in args),
            "runsc passes Unix sockets across bind mounts (--host-uds)",
            "run 'make engine'",
        )
    line(not (info.get("Driver") == "" or info.get("NCPU", 0) < 1), "engine has CPUs")
    st = _image.status()
    line(
        st.state is _image.ImageState.CURRENT,
        f"sandbox image: {st.describe()}",
        "run 'airlock image build'",
    )
    raise typer.Exit(EXIT_OK if problems == 0 else EXIT_ERROR)


def version() -> None:
    """Print Airlock's version."""
    out.print(__version__)
