"""ReplicaBackend's logic with fake sandboxes (no Docker): spreading, the bounded queue,
deadlines, input checks, quarantine on a live finding, replacement of a failed replica."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from runner.controller import reporting
from runner.errors import WorkerCrashed
from runner.report import Report, Signature, TensorSpecInfo
from runner.rules.catalog import RuleName
from runner.serve.backend import BadRequest, Deadline, Exhausted, Unavailable
from runner.serve.replicas import ReplicaBackend
from runner.telemetry.events import Source


class Fake:
    opened: list[Fake] = []

    def __init__(self, shell_at: int = 0, crash_at: int = 0, delay: float = 0.0) -> None:
        self.container = f"fake-{len(Fake.opened)}"
        self.calls, self.shell_at, self.crash_at, self.delay = 0, shell_at, crash_at, delay
        self.alive, self.closed, self.findings = True, False, []  # type: ignore[var-annotated]
        self.checks, self.full_checks, self.judged = 0, 0, (-1, -1)
        Fake.opened.append(self)

    def open(self) -> None:
        pass

    def describe(self) -> Signature:
        spec = TensorSpecInfo(name="x", dtype="float32", shape=[-1, 4])
        out = TensorSpecInfo(name="y", dtype="float32", shape=[-1, 4])
        return Signature(format="onnx", inputs=[spec], outputs=[out], can_infer=True)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.delay)
        self.calls += 1
        if self.crash_at and self.calls >= self.crash_at:
            self.alive = False
            raise WorkerCrashed("the worker exited with code 139")
        if self.shell_at and self.calls >= self.shell_at:
            self.findings = [
                reporting.finding(RuleName.SHELL_EXECUTED, Source.TRACER, "ran /bin/sh", ["sh"], 1)
            ]
        return {"y": inputs["x"] * 2}

    def check(self, full: bool) -> Report | None:
        self.checks += 1
        state = (self.calls, len(self.findings))
        if not full and state == self.judged:
            return None
        self.judged, self.full_checks = state, self.full_checks + 1
        return self.live_report()

    def spent(self) -> tuple[int, int, int, int]:
        return (self.calls * 500, self.calls, self.calls * 70, self.calls)

    def live_report(self) -> Report:
        return reporting.minimal(None, "fake").amended(findings=list(self.findings))

    def running(self) -> bool:
        return self.alive

    def kill(self) -> None:
        self.alive = False

    def close(self) -> None:
        self.closed, self.alive = True, False

    def report(self) -> Report:
        return self.live_report()

    def killed_from_outside(self) -> bool:
        return False


def backend(make: Any = Fake, **kw: Any) -> ReplicaBackend:
    Fake.opened = []
    b = ReplicaBackend("m.onnx", factory=make, check_interval_s=0.05, **kw)
    b.start()
    return b


X = np.ones((2, 4), np.float32)


def test_replicas_answer_and_requests_are_spread() -> None:
    b = backend(replicas=2, make=lambda: Fake(delay=0.05))
    try:
        threads = [threading.Thread(target=b.infer, args=({"x": X}, 5.0)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [f.calls for f in Fake.opened] == [3, 3] or sum(f.calls for f in Fake.opened) == 6
        assert all(f.calls > 0 for f in Fake.opened)
        np.testing.assert_array_equal(b.infer({"x": X}, 1.0)["y"], X * 2)
        assert b.metadata().inputs[0].datatype == "FP32"
        assert b.report()["requests"] == 7
    finally:
        b.close()
    assert all(f.closed for f in Fake.opened)


def test_inputs_are_checked_against_the_description() -> None:
    b = backend()
    try:
        for bad in ({"z": X}, {"x": X.astype(np.int64)}, {"x": np.ones((2, 3), np.float32)}):
            with pytest.raises(BadRequest):
                b.infer(bad, 1.0)
    finally:
        b.close()


def test_a_full_queue_is_exhausted_and_a_late_answer_is_a_deadline() -> None:
    b = backend(queue=1, make=lambda: Fake(delay=0.5))
    try:
        first = threading.Thread(target=b.infer, args=({"x": X}, 5.0))
        first.start()
        time.sleep(0.1)
        late: list[BaseException] = []

        def wait_too_long() -> None:
            try:
                b.infer({"x": X}, 0.2)
            except Deadline as e:
                late.append(e)

        second = threading.Thread(target=wait_too_long)
        second.start()
        time.sleep(0.05)
        with pytest.raises(Exhausted):
            b.infer({"x": X}, 5.0)
        first.join()
        second.join()
        assert len(late) == 1
    finally:
        b.close()


def test_a_finding_at_the_nth_request_quarantines_every_replica() -> None:
    b = backend(replicas=2, make=lambda: Fake(shell_at=3))
    try:
        for _ in range(4):
            b.infer({"x": X}, 1.0)
        with pytest.raises(Unavailable, match="AL202") as e:
            for _ in range(4):
                b.infer({"x": X}, 1.0)
        assert "sh" in e.value.reason
        deadline = time.monotonic() + 5
        while not all(f.closed for f in Fake.opened) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(f.closed for f in Fake.opened)
        r = b.report()
        assert r["quarantined"] and "AL202" in r["quarantine_reason"]
        assert not b.ready()
    finally:
        b.close()


def test_a_crashed_replica_is_replaced_within_the_budget() -> None:
    b = backend(make=lambda: Fake(crash_at=2), max_restarts=2)
    try:
        b.infer({"x": X}, 1.0)
        with pytest.raises(Unavailable, match="replaced"):
            b.infer({"x": X}, 1.0)
        b.infer({"x": X}, 5.0)  # the fresh sandbox (waited for)
        assert len(Fake.opened) == 2 and Fake.opened[0].closed
        assert b.report()["restarts"] == 1
        assert not b.quarantined  # the crash's own finding is the event, not grounds
    finally:
        b.close()


def test_a_replica_killed_from_outside_is_replaced() -> None:
    b = backend()
    try:
        Fake.opened[0].alive = False
        deadline = time.monotonic() + 5
        while len(Fake.opened) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        np.testing.assert_array_equal(b.infer({"x": X}, 5.0)["y"], X * 2)
        assert any(e["event"] == "replica-restart" for e in b.report()["events"])
    finally:
        b.close()


# --- recycling ----------------------------------------------------------------------------------


def test_recycles_before_the_budget_with_no_failed_request() -> None:
    from runner.serve.recycle import Budget

    b = backend(budget=Budget(requests=3))
    try:
        for _ in range(12):
            assert np.array_equal(b.infer({"x": X}, 5.0)["y"], X * 2)
            deadline = time.monotonic() + 5.0
            while b._recycling and time.monotonic() < deadline:
                time.sleep(0.01)
        report = b.report()
        assert report["recycles"] >= 3 and not report["quarantined"]
        assert any(e["event"] == "replica-recycled" for e in report["events"])
        assert all(f.closed for f in Fake.opened[:-1])  # every old sandbox closed
        assert len(report["closed"]) == len(Fake.opened) - 1
    finally:
        b.close()
    assert all(f.closed for f in Fake.opened)


def test_recycling_under_load_never_runs_more_than_replicas_plus_one() -> None:
    from runner.serve.recycle import Budget

    peak = [0]

    class Counted(Fake):
        def open(self) -> None:
            peak[0] = max(peak[0], sum(not f.closed for f in Fake.opened))

    b = backend(lambda: Counted(delay=0.005), replicas=2, budget=Budget(requests=4))
    errors: list[Exception] = []

    def work() -> None:
        for _ in range(15):
            try:
                b.infer({"x": X}, 10.0)
            except Exception as e:
                errors.append(e)

    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors and b.report()["recycles"] >= 2
        assert peak[0] <= 3
    finally:
        b.close()


def test_a_finding_in_a_recycled_sandbox_s_final_report_quarantines() -> None:
    from runner.serve.recycle import Budget

    class Late(Fake):
        def report(self) -> Report:  # only the final report shows it
            f = reporting.finding(RuleName.SHELL_EXECUTED, Source.TRACER, "ran /bin/sh", ["sh"], 1)
            return reporting.minimal(None, "fake").amended(findings=[f])

    b = backend(Late, budget=Budget(requests=2))
    try:
        b.infer({"x": X}, 5.0)
        b.infer({"x": X}, 5.0)
        deadline = time.monotonic() + 5.0
        while not b.quarantined and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "AL" in b.quarantined
        with pytest.raises(Unavailable):
            b.infer({"x": X}, 5.0)
    finally:
        b.close()


def test_quiet_evidence_is_not_judged_again_but_the_timer_judges_in_full() -> None:
    b = backend(full_interval_s=0.1)
    try:
        b.infer({"x": X}, 5.0)
        fake = Fake.opened[0]
        before = fake.full_checks
        time.sleep(0.5)
        assert fake.full_checks > before  # the timer's full judgements, evidence unchanged
    finally:
        b.close()
