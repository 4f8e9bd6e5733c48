"""Paths are judged by what they resolve to (runner.telemetry.paths): the kernel's walk, with
what the tracer knows of the process."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from runner.telemetry import paths
from runner.telemetry.paths import Resolved, normalise


@dataclass
class Ctx:
    cwds: dict[int, str] = field(default_factory=lambda: {10: "/work", 11: "/work", 20: "/srv"})
    fds: dict[tuple[int, int], str] = field(default_factory=dict)
    groups: dict[int, int] = field(default_factory=lambda: {10: 10, 11: 10, 20: 20})
    links: dict[str, str] = field(default_factory=dict)

    def cwd_of(self, pid: int) -> str | None:
        return self.cwds.get(pid)

    def fd_path(self, pid: int, fd: int) -> str | None:
        return self.fds.get((self.groups.get(pid, pid), fd))

    def group_of(self, pid: int) -> int | None:
        return self.groups.get(pid)

    def link(self, path: str) -> str | None:
        return self.links.get(path)

    def is_link_name(self, name: str) -> bool:
        return any(k.rsplit("/", 1)[-1] == name for k in self.links)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("//a//b/", "/a/b"),
        ("/a/./b/.", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/airlock/./run/../run/x", "/airlock/run/x"),
        ("/var/run/docker.sock", "/run/docker.sock"),
        ("/proc/self/root/etc/shadow", "/etc/shadow"),
        ("/proc/1/root/etc/shadow", "/etc/shadow"),
    ],
)
def test_lexical_rules_and_the_images_links(raw: str, expected: str) -> None:
    assert normalise(raw) == Resolved(expected)


def test_relative_paths_start_at_their_base() -> None:
    assert normalise("x/../y", 10, Ctx(), "/tmp").path == "/tmp/y"
    assert normalise("../../../etc", 10, Ctx(), "/tmp/a").path == "/etc"
    unknown = normalise("a/../../b", 10, Ctx(), None, "fd 7")
    assert unknown == Resolved("<fd 7>/b", known=False)
    assert not unknown.path.startswith("/")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/proc/self/environ", "/proc/self/environ"),
        ("/proc/10/environ", "/proc/self/environ"),
        ("/proc/11/environ", "/proc/self/environ"),  # a thread of the caller's
        ("/proc/thread-self/environ", "/proc/self/environ"),
        ("/proc/self/task/11/environ", "/proc/self/environ"),
        ("/proc/10/task/11/mem", "/proc/self/mem"),
        ("/proc/20/environ", "/proc/20/environ"),
        ("/proc/20/task/20/environ", "/proc/20/environ"),
        ("/proc/self/cwd/x", "/work/x"),
        ("/proc/self/task/11/cwd/../x", "/x"),
        ("/proc/20/cwd/x", "/srv/x"),
        ("/proc/self/fd/5/x", "/airlock/run/x"),
        ("/dev/fd/5", "/airlock/run"),
        ("/dev/stdin", "/proc/self/fd/0"),
    ],
)
def test_the_callers_proc_entries_and_links(raw: str, expected: str) -> None:
    ctx = Ctx(fds={(10, 5): "/airlock/run"})
    got = normalise(raw, 10, ctx)
    assert got.path == expected
    assert got.known is (raw != "/dev/stdin")  # fd 0 was never seen opened


def test_symlinks_the_model_made_are_followed_like_the_kernel() -> None:
    ctx = Ctx(links={"/tmp/l": "/airlock/run", "/tmp/a/r": "../b", "/tmp/x": "/tmp/y"})
    ctx.links["/tmp/y"] = "/tmp/x"
    assert normalise("/tmp/l/x", 10, ctx).path == "/airlock/run/x"
    assert normalise("/tmp/l/../x", 10, ctx).path == "/airlock/x"  # .. after the link
    assert normalise("/tmp/l", 10, ctx, follow=False).path == "/tmp/l"
    assert normalise("/tmp/l", 10, ctx).path == "/airlock/run"
    assert normalise("/tmp/a/r/c", 10, ctx).path == "/tmp/b/c"
    loop = normalise("/tmp/x/z", 10, ctx)
    assert not loop.known


def test_bounds_and_bad_input() -> None:
    assert not normalise("/a" * paths.MAX_INPUT).known
    # thousands of components all named like a link: the lookups are bounded, the path unknown
    deep = normalise("/tmp" + "/l" * 4000, 10, Ctx(links={"/tmp/x/l": "/"}))
    assert not deep.known and deep.path.startswith("/tmp/l/l")
    assert normalise("").path == "/"
    assert paths.is_under("/airlock/run/x", "/airlock/run")
    assert not paths.is_under("/airlock/running", "/airlock/run")


class _Broken(Ctx):
    def group_of(self, pid: int) -> int | None:
        raise RuntimeError("a context that misbehaves")


def test_a_misbehaving_context_gives_an_unknown_path_not_an_exception() -> None:
    assert not normalise("/tmp/x", 10, _Broken()).known
