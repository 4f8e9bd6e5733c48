"""The driver's confirmation of the sandbox container's exit state from the kubelet
(runner.backends.kubernetes.exit_state), against faked API objects: the kubernetes client's own
model classes and the API's JSON. This is the logic, not a cluster: nothing here runs a Pod."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client as k
from kubernetes.client.exceptions import ApiException

from runner.backends.base import Outcome
from runner.backends.kubernetes import exit_state
from runner.backends.kubernetes.exit_state import Observed
from runner.batch import evaluation as ev
from runner.controller.engine import ContainerState
from runner.policy import Policy
from runner.report import ModelInfo, SandboxInfo
from runner.rules.analysis import Collected, build
from runner.rules.catalog import Verdict

ERRORS = (ApiException, OSError)


def _clean_outcome(exit_code: int = 0) -> Outcome:
    """A clean report as the in-pod controller builds it with the exit code it assumed."""
    p = Policy(trace=False)
    c = Collected(
        policy=p,
        model=ModelInfo(path="/m/a.onnx", format="onnx", detected_by="ext", size_bytes=1, files=[]),
        sandbox=SandboxInfo(
            session="s", container="pod:s", image="i", image_id="", runtime="kubernetes", policy=p
        ),
        final_state=ContainerState("exited", False, exit_code, False, ""),
    )
    report = build(c)
    assert report.verdict is Verdict.CLEAN
    result = ev.EvalResult(
        path="/m/a.onnx",
        sha256="0" * 64,
        format="onnx",
        verdict=report.verdict,
        findings={},
        probed=False,
        seconds=1.0,
    )
    report_json, bom_json, _ = ev._files(report)
    return Outcome(result, "a.onnx-000000000000", report_json, bom_json)


def _pod(terminated: Any = None, running: bool = False, name: str = "sandbox") -> k.V1Pod:
    state = k.V1ContainerState(
        terminated=terminated, running=k.V1ContainerStateRunning() if running else None
    )
    status = k.V1ContainerStatus(
        name=name, state=state, image="i", image_id="", ready=False, restart_count=0
    )
    return k.V1Pod(status=k.V1PodStatus(container_statuses=[status]))


def _ended(code: Any, reason: Any = "Completed") -> Any:
    if isinstance(code, int) and not isinstance(code, bool):
        return _pod(k.V1ContainerStateTerminated(exit_code=code, reason=reason))
    # what a hostile or broken answer could hold, which the client's models would refuse
    terminated = SimpleNamespace(exit_code=code, reason=reason)
    state = SimpleNamespace(terminated=terminated, running=None, waiting=None)
    status = SimpleNamespace(name="sandbox", state=state)
    return SimpleNamespace(status=SimpleNamespace(container_statuses=[status]))


def _listing(*pods: Any) -> Any:
    if all(isinstance(p, k.V1Pod) for p in pods):
        return k.V1PodList(items=list(pods))
    return SimpleNamespace(items=list(pods))


def test_a_confirmed_exit_0_keeps_a_clean_verdict_clean() -> None:
    outcome = _clean_outcome()
    observed = exit_state.from_pods(_listing(_ended(0)))
    assert observed == Observed(exit_code=0, reason="Completed")
    assert exit_state.confirm(outcome, 0, observed) is outcome


def _amended(observed: Observed, assumed: int | None = 0) -> tuple[Outcome, dict[str, Any]]:
    out = exit_state.confirm(_clean_outcome(), assumed, observed)
    assert out.result.verdict is Verdict.ERROR, out.result
    report = json.loads(out.report_json or "{}")
    assert report["verdict"] == "error" and report["error"]["kind"] == "SandboxExit"
    assert out.bom_json is not None  # the BOM made again from the amended report
    return out, report


def test_an_oom_kill_is_error_and_says_oom() -> None:
    out, report = _amended(exit_state.from_pods(_listing(_ended(137, "OOMKilled"))), 137)
    assert "OOM" in (out.result.error or "")
    assert report["resources"]["oom_killed"] is True
    assert report["resources"]["exit_code"] == 137


def test_an_oom_kill_is_error_even_with_the_assumed_code_0() -> None:
    out, _ = _amended(Observed(exit_code=0, reason="OOMKilled"))
    assert "OOMKilled" in (out.result.error or "")


def test_a_different_exit_code_is_error_and_the_report_has_the_kubelets() -> None:
    out, report = _amended(exit_state.from_pods(_listing(_ended(3, "Error"))))
    assert "exit code 3" in (out.result.error or "") and "says 0" in (out.result.error or "")
    assert report["resources"]["exit_code"] == 3 and report["tracer"]["exit_code"] == 3


def test_no_assumed_exit_is_never_accepted() -> None:
    out, _ = _amended(Observed(exit_code=0, reason="Completed"), assumed=None)
    assert "no exit record" in (out.result.error or "")


def test_a_container_still_running_past_the_wait_is_error() -> None:
    asked: list[str] = []

    def pods(label: str) -> Any:
        asked.append(label)
        return _listing(_pod(running=True))

    observed = exit_state.read(pods, 0.1, 0.02, ERRORS)
    assert observed.pending and len(asked) >= 2  # asked again while it ran
    out, _ = _amended(observed)
    assert "running after the wait" in (out.result.error or "")


def test_a_container_that_ends_within_the_wait_is_confirmed() -> None:
    answers = [_listing(_pod(running=True)), _listing(_pod()), _listing(_ended(0))]
    observed = exit_state.read(lambda _: answers.pop(0), 5.0, 0.01, ERRORS)
    assert observed.terminated and exit_state.accepted(0, observed)


@pytest.mark.parametrize(
    ("listing", "why"),
    [
        (_listing(), "no Pod"),
        (_listing(_ended(0), _ended(0)), "2 Pods"),
        (_listing(*[_ended(0)] * 40), "more than 16 Pods"),
        (_listing(_pod(k.V1ContainerStateTerminated(exit_code=0), name="controller")), "0 status"),
        (SimpleNamespace(items="not a list"), "not a list of Pods"),
    ],
)
def test_what_the_pod_listing_lacks_keeps_the_verdict_from_clean(listing: Any, why: str) -> None:
    observed = exit_state.read(lambda _: listing, 0.0, 0.01, ERRORS)
    assert why in observed.problem
    out, _ = _amended(observed)
    assert why in (out.result.error or "")


def test_the_older_job_name_label_is_asked_when_the_newer_finds_nothing() -> None:
    asked: list[str] = []

    def pods(label: str) -> Any:
        asked.append(label)
        return _listing(_ended(0)) if label == "job-name" else _listing()

    assert exit_state.read(pods, 0.0, 0.01, ERRORS).terminated
    assert asked == ["batch.kubernetes.io/job-name", "job-name"]


def test_a_status_the_api_refuses_is_error_after_asking_again() -> None:
    calls = 0

    def refuse(_: str) -> Any:
        nonlocal calls
        calls += 1
        raise ApiException(status=403, reason="Forbidden\x1b[31m")

    observed = exit_state.read(refuse, 0.1, 0.02, ERRORS)
    assert calls >= 2 and observed.problem.startswith("the API refused")
    assert "\x1b" not in observed.problem
    out, _ = _amended(observed)
    assert "403 Forbidden" in (out.result.error or "")


@pytest.mark.parametrize("code", ["0", True, 1 << 40, -(1 << 40), 0.0, None, [0], {"exitCode": 0}])
def test_an_exit_code_of_the_wrong_type_is_not_an_exit_code(code: Any) -> None:
    observed = exit_state.from_pods(_listing(_ended(code)))
    assert not observed.terminated and not exit_state.accepted(0, observed)
    assert "not an exit code" in observed.problem


def test_hostile_strings_are_neutralised_and_bounded() -> None:
    reason = "\x1b]0;owned\x07\u202eOOMKilled\n" + "A" * 1_000_000
    observed = exit_state.from_pods(_listing(_ended(0, reason)))
    assert observed.terminated and observed.reason.isprintable()
    assert len(observed.reason) <= exit_state.MAX_TEXT
    assert not exit_state.accepted(0, observed) or observed.reason != "OOMKilled"
    waiting = k.V1ContainerState(waiting=k.V1ContainerStateWaiting(reason="\x1b[2J" * 10_000))
    status = k.V1ContainerStatus(
        name="sandbox", state=waiting, image="i", image_id="", ready=False, restart_count=0
    )
    pending = exit_state.from_pods(
        _listing(k.V1Pod(status=k.V1PodStatus(container_statuses=[status])))
    )
    assert pending.pending.isprintable() and len(pending.pending) < 200


def test_an_object_that_raises_is_a_problem_not_an_exception() -> None:
    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("boom")

    observed = exit_state.from_pods(SimpleNamespace(items=[Hostile()]))
    assert "could not be read (RuntimeError)" in observed.problem


def test_a_report_that_is_not_a_report_is_an_error_line() -> None:
    outcome = _clean_outcome()
    broken = Outcome(outcome.result, outcome.stem, '{"report": 1}', None)
    out = exit_state.confirm(broken, 0, Observed(problem="the Job has no Pod"))
    assert out.result.verdict is Verdict.ERROR and "unreadable" in (out.result.error or "")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_terminated = st.fixed_dictionaries({}, optional={"exitCode": _json, "reason": _json})
_state = st.fixed_dictionaries(
    {}, optional={"terminated": _terminated | _json, "running": _json, "waiting": _json}
)
_status = st.fixed_dictionaries(
    {"name": st.sampled_from(["sandbox", "controller"]) | _json}, optional={"state": _state | _json}
)
_pods = st.fixed_dictionaries(
    {
        "items": st.lists(
            st.fixed_dictionaries(
                {
                    "status": st.fixed_dictionaries(
                        {}, optional={"containerStatuses": st.lists(_status, max_size=3) | _json}
                    )
                }
            ),
            max_size=3,
        )
        | _json
    }
)


@settings(max_examples=300, deadline=None)
@given(_pods)
def test_the_status_reader_never_raises_on_any_json(listing: dict[str, Any]) -> None:
    observed = exit_state.from_pods(listing)
    assert observed.terminated == (observed.exit_code is not None)
    if observed.terminated:
        assert isinstance(observed.exit_code, int) and not isinstance(observed.exit_code, bool)
    for text in (observed.reason, observed.pending, observed.problem):
        assert text.isprintable() and len(text) < 400
    message = exit_state.why_not(0, observed)
    assert message.isprintable()
