"""Housekeeping: the sandbox images, leftovers, the environment's health, the version."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from runner import __version__
from runner.cli.options import JsonOut
from runner.cli.output import note, out
from runner.errors import EXIT_ERROR, EXIT_OK

Force = Annotated[bool, typer.Option("--force", help="rebuild even when current")]
All = Annotated[
    bool, typer.Option("--all", help="also remove sandboxes whose owner is still running")
]
With = Annotated[
    list[str] | None,
    typer.Option(
        "--with",
        help="also build this framework image (tensorflow), layered on the default one",
    ),
]


def image_build(force: Force = False, with_: With = None) -> None:
    """Build the sandbox image offline (the base is bootstrapped when no registry answers),
    and with --with each framework image named, on it."""
    from runner.controller import framework_images as _frameworks
    from runner.controller import images as _image

    frameworks = [_frameworks.known(f) for f in dict.fromkeys(with_ or [])]
    image = _image.build(note, force)
    for framework in frameworks:
        image = _frameworks.build_locked(framework, note, force)
    out.print(image, markup=False, highlight=False)


def _status_json(name: str, st: Any) -> dict[str, Any]:
    return {
        "name": name,
        "state": st.state.value,
        "tag": st.tag,
        "image_id": st.image_id,
        "size_bytes": st.size_bytes,
        "other_tags": st.other_tags,
    }


def image_status(json_: JsonOut = False) -> None:
    """Say whether each sandbox image (the default one, each framework's) is current, stale or
    missing, and its size. Exit 0 when the default one is current (a framework image is built
    when a model first needs it), 3 otherwise."""
    from runner.controller import framework_images as _frameworks
    from runner.controller import images as _image

    found = _frameworks.statuses()
    default = found.pop("default")
    if json_:
        body = _status_json("default", default)
        body["frameworks"] = [_status_json(n, st) for n, st in found.items()]
        out.print_json(json.dumps(body))
    else:
        for name, st in [("default", default), *found.items()]:
            more = ""
            if name != "default" and st.size_bytes and default.size_bytes:
                more = f"; {_image.human_size(st.size_bytes - default.size_bytes)} over the default"
            out.print(f"{name + ':':12} {st.describe()}{more}", markup=False, highlight=False)
    raise typer.Exit(EXIT_OK if default.state is _image.ImageState.CURRENT else EXIT_ERROR)


def gc(all_: All = False) -> None:
    """Remove sandboxes and directories left behind by a controller that was killed, and the
    framework images built from older sources."""
    from runner.controller import framework_images as _frameworks
    from runner.controller import sessions as _session

    reaped = _session.reap(everything=all_)
    images = _frameworks.remove_stale()
    out.print(
        f"removed {len(reaped.containers)} container(s), "
        f"{len(reaped.directories)} directory(ies) and {len(images)} stale framework image(s)",
        markup=False,
    )
    for tag in images:
        note(f"removed {tag}")


def doctor() -> None:
    """Check the engine, the runtimes and the image; print the fix for each problem."""
    from runner.controller import engine as _docker
    from runner.controller import framework_images as _frameworks
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
        from runner.telemetry.gvisor import session as _gvisor

        line(
            _gvisor.RUNTIME in runtimes,
            f"runtime {_gvisor.RUNTIME} registered (runsc traced by gVisor's trace points)",
            "run 'sudo make engine'",
        )
    line(not (info.get("Driver") == "" or info.get("NCPU", 0) < 1), "engine has CPUs")
    import shutil

    tools = [t for t in ("strace", "nsenter") if shutil.which(t) is None]
    warm = "ok  " if not tools else "note"
    why = "" if not tools else f" (missing {', '.join(tools)}: batches start cold; 'make engine')"
    out.print(f"{warm} warm starts: strace and nsenter on the host{why}", markup=False)
    found = _frameworks.statuses()
    st = found.pop("default")
    line(
        st.state is _image.ImageState.CURRENT,
        f"sandbox image: {st.describe()}",
        "run 'airlock image build'",
    )
    for name, fw in found.items():  # optional: built when a model first needs one
        mark = "ok  " if fw.state is _image.ImageState.CURRENT else "note"
        when = "" if mark == "ok  " else " (built when a model first needs it)"
        out.print(f"{mark} {name} image: {fw.describe()}{when}", markup=False, highlight=False)
    raise typer.Exit(EXIT_OK if problems == 0 else EXIT_ERROR)


def version() -> None:
    """Print Airlock's version."""
    out.print(__version__)
