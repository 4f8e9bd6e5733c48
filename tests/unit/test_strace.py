"""The tracer's log is hostile data: the parser copes with every line shape strace prints."""

from __future__ import annotations

from runner.telemetry import strace as _strace
from tests.fixtures.traces import line, s, shell_in_load, worker_exit, worker_start


def test_complete_and_resumed_calls_and_exit_records() -> None:
    log = worker_start() + shell_in_load() + worker_exit()
    trace = _strace.parse(log.encode())
    names = [(c.pid, c.name, c.result) for c in trace.calls]
    # in start order, so a clone comes before what its child does
    assert names == [(10, "execve", "0"), (10, "clone", "20"), (20, "execve", "0")]
    execve = trace.calls[2]
    assert _strace.decode_string(execve.args[0]) == "/bin/sh"
    assert trace.calls[1].time < execve.time
    assert trace.exits[10].code == 0 and trace.exits[20].code == 0
    assert trace.first_pid == 10 and trace.malformed == 0 and not trace.cut_mid_line


def test_errors_injection_signals_and_kills() -> None:
    log = (
        worker_start()
        + line(
            10,
            1.0,
            "mount("
            + s("none")
            + ", "
            + s("/mnt")
            + ", "
            + s("tmpfs")
            + ", 0, NULL) = -1 EPERM (Operation not permitted) (INJECTED)",
        )
        + line(10, 1.1, "kill(1, SIGKILL) = -1 EPERM (Operation not permitted)")
        + line(10, 1.2, "--- SIGRT_1 {si_signo=SIGRT_1, si_code=SI_TKILL, si_pid=10} ---")
        + line(10, 1.3, "+++ killed by SIGSEGV (core dumped) +++")
    )
    trace = _strace.parse(log.encode())
    mount, kill = trace.calls[1], trace.calls[2]
    assert mount.injected and mount.errno == "EPERM" and mount.failed
    assert kill.args == ("1", "SIGKILL") and not kill.injected
    assert trace.signals[0].signal == "SIGRT_1"
    assert trace.exits[10].signal == "SIGSEGV" and trace.exits[10].code is None


def test_escaped_and_truncated_strings_and_nested_args() -> None:
    assert _strace.decode_string(s('a,b)"x')) == 'a,b)"x'
    assert _strace.decode_string(s("abc") + "...") == "abc..."
    args = _strace.split_args('3, {sa_family=AF_INET, sin_port=htons(53)}, [1, 2], "\\x2c"')
    assert args == ("3", "{sa_family=AF_INET, sin_port=htons(53)}", "[1, 2]", '"\\x2c"')


def test_many_pids_interleaved() -> None:
    log = worker_start()
    for pid in range(100, 140):
        log += line(pid, 1.0, f"openat(AT_FDCWD, {s('/tmp/f')}, O_RDONLY <unfinished ...>")
    for pid in reversed(range(100, 140)):
        log += line(pid, 1.5, "<... openat resumed>) = 3")
    trace = _strace.parse(log.encode())
    assert len([c for c in trace.calls if c.name == "openat"]) == 40
    assert trace.malformed == 0


def test_garbage_cut_lines_and_orphan_resumes_are_counted_not_fatal() -> None:
    log = (
        worker_start()
        + "this is not strace\n"
        + line(11, 1.0, "<... read resumed>) = 1")
        + line(10, 2.0, "openat(AT_FDCWD, " + s("/etc/shadow") + ", O_RDONLY <unfinished ...")
    )
    trace = _strace.parse(log.encode()[:-5])
    assert trace.malformed >= 2
    assert trace.cut_mid_line
    assert trace.calls[0].name == "execve"


def test_unfinished_call_at_the_end_is_kept() -> None:
    log = worker_start() + line(10, 3.0, "wait4(-1,  <unfinished ...>")
    trace = _strace.parse(log.encode())
    assert trace.calls[-1].name == "wait4" and trace.calls[-1].result == "?"


def test_strace_s_own_detach_and_stop_shapes_are_read() -> None:
    """A call strace stopped tracing mid-way when it detached, and a group-stop, are strace's
    own output: read, not counted as lines of no known shape (AL905)."""
    from runner.telemetry import strace as st

    t = st.parse(
        b"10    1.0 read(3,  <detached ...>\n"
        b"11    1.1 --- stopped by SIGSTOP ---\n"
        b"12    1.2 --- stopped by SIGTSTP ---\n"
    )
    assert t.malformed == 0 and t.problems() == []
    assert [(c.name, c.result) for c in t.calls] == [("read", "?")]
    assert [(s.pid, s.signal) for s in t.signals] == [(11, "SIGSTOP"), (12, "SIGTSTP")]
    # anything else after '---' still is not strace's
    assert st.parse(b"10    1.0 --- stopped by nothing ---\n").malformed == 1


def test_a_call_strace_could_not_name_is_read() -> None:
    """strace prints ??? for a call whose number it could not read (a thread exiting in it):
    its own shape, found in a benign Hugging Face run, not a line of no known shape."""
    from runner.telemetry import strace as st

    t = st.parse(
        b"30    1796193495.348347 ???( <unfinished ...>\n"
        b"30    1796193495.348455 <... ??? resumed>) = ?\n"
    )
    assert t.malformed == 0 and t.problems() == []
    assert [(c.name, c.result) for c in t.calls] == [("???", "?")]
    assert st.parse(b"30    1.0 ??x(1) = 0\n").malformed == 1
