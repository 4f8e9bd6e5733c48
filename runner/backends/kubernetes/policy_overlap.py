"""Other NetworkPolicies in the namespace that could open the session's Pods.

NetworkPolicies are additive: the session's deny-all policy only denies what no other policy
allows. A policy already in the namespace whose podSelector may select the session's Pods and
that has any ingress or egress rule (an `allow-all-egress` with `podSelector: {}` is common)
would give the model a network. The driver refuses to start then.

What the API returns is read as untrusted: a policy whose shape is not understood counts as one
that may open the Pods. A selector is taken to miss the session's Pods only when it provably
does: a matchLabels key the Pods do not carry, or carry with another value. Cluster-wide
policies (AdminNetworkPolicy, Cilium's or Calico's own kinds) are not seen here
(docs/kubernetes.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.errors import untrusted_text

MAX_POLICIES = 1000


def _field(obj: Any, snake: str, camel: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(camel, obj.get(snake))
    return getattr(obj, snake, None)


def _misses(selector: Any, labels: Mapping[str, str], varying: frozenset[str]) -> bool:
    """The podSelector provably selects none of the Pods carrying `labels` (and labels whose
    keys are in `varying`, with values that differ from Pod to Pod)."""
    match = _field(selector, "match_labels", "matchLabels")
    if not isinstance(match, Mapping):
        return False
    return any(
        isinstance(k, str) and k not in varying and labels.get(k) != v for k, v in match.items()
    )


def _rules(spec: Any) -> bool:
    """The policy has an ingress or egress rule (or a shape that is not understood)."""
    for snake in ("ingress", "egress"):
        value = _field(spec, snake, snake)
        if value is None:
            continue
        if not isinstance(value, list | tuple) or value:
            return True
    return False


def opening(
    listed: Any, own: str, labels: Mapping[str, str], varying: frozenset[str] = frozenset()
) -> list[str]:
    """The names of the policies (other than `own`) that may allow traffic to or from Pods
    carrying `labels` (and `varying` keys); a listing that is not a list is one such."""
    items = _field(listed, "items", "items")
    if not isinstance(items, list | tuple) or len(items) > MAX_POLICIES:
        return ["? (the API's answer is not a list of policies)"]
    out = []
    for item in items:
        name = _field(_field(item, "metadata", "metadata"), "name", "name")
        if name == own:
            continue
        spec = _field(item, "spec", "spec")
        selector = _field(spec, "pod_selector", "podSelector")
        if spec is not None and _misses(selector, labels, varying):
            continue
        if spec is None or _rules(spec):
            out.append(untrusted_text(name, 80) if isinstance(name, str) else "?")
    return out
