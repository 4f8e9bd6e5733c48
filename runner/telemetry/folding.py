"""Folding events: noise aggregated in bounded memory, and no event a rule judges lost.

Identical events (same kind, summary, phase, result, source) are one event with a count. Past
EXACT_LIMIT distinct events of its source (the tracer and the worker each have their own, so a
flood from one does not fold the other's), a new event folds into others of its kind, rule and
phase whose path or address shares its first two components; past COARSE_LIMIT of those, into
its kind, rule and phase; past KIND_LIMIT of those, into its rule, phase and source alone, a
set bounded by the rule table. The class an event falls under (its rule, from `classify`) is
part of every key, so an event never folds into one a rule would judge otherwise: every (rule,
phase, source) the events reach keeps an event, and the counts add up to every event seen. A
folded event keeps the first event's kind and detail (which the rules read), a count, how many
distinct events it holds and a sample of their summaries; `folded` counts the events past the
exact cap, which the analysis reports.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # events.py imports this module: only the types are needed here
    from runner.telemetry.events import DetailValue, Event

EXACT_LIMIT = 5000
COARSE_LIMIT = 2000
KIND_LIMIT = 1000
SAMPLE = 5  # summaries kept of the distinct events a folded event holds
_SUMMARY_CHARS = 300

Classify = Callable[["Event"], Hashable]  # the rule an event falls under (None: no rule)


def _no_rule(event: Event) -> Hashable:
    return None


def subject_prefix(event: Event) -> str:
    """The first two components of the path or address an event names ('' for none)."""
    d = event.detail
    raw = d.get("path") or d.get("address") or d.get("module") or ""
    text = str(raw[0] if isinstance(raw, list) and raw else raw)[:256]
    if not text.startswith("/"):
        return text[:32]
    parts = text.split("/")
    return "/".join(parts[:3]) + "/" if len(parts) > 3 else "/".join(parts[:2]) + "/"


@dataclass
class _Entry:
    event: Event
    count: int
    distinct: int = 1
    sample: list[str] = field(default_factory=list)


@dataclass
class Folder:
    """Events in, a bounded list of events with counts out."""

    classify: Classify = _no_rule
    exact_limit: int = EXACT_LIMIT
    coarse_limit: int = COARSE_LIMIT
    kind_limit: int = KIND_LIMIT
    folded: int = 0  # events folded into others past the exact cap
    dropped: int = 0  # always 0: no event is dropped (kept for the report's field)
    _entries: list[_Entry] = field(default_factory=list)
    _exact: dict[tuple[object, ...], int] = field(default_factory=dict)
    _per_source: dict[object, int] = field(default_factory=dict)
    _tiers: tuple[dict[tuple[object, ...], int], ...] = field(default_factory=lambda: ({}, {}, {}))

    def add(self, event: Event) -> None:
        key = (event.kind, event.summary, event.phase, event.result, event.source)
        at = self._exact.get(key)
        if at is not None:
            self._entries[at].count += event.count
            return
        kept = self._per_source.get(event.source, 0)
        if kept < self.exact_limit:
            self._per_source[event.source] = kept + 1
            self._exact[key] = len(self._entries)
            self._entries.append(_Entry(event, event.count))
            return
        self.folded += event.count
        rule = self.classify(event)
        base = (event.phase, event.source, rule)
        keys = (
            (*base, event.kind, event.result, subject_prefix(event)),
            (*base, event.kind),
            base,
        )
        limits = (self.coarse_limit, self.kind_limit, None)
        for tier, tier_key, limit in zip(self._tiers, keys, limits, strict=True):
            at = tier.get(tier_key)
            if at is not None:
                self._fold(self._entries[at], event)
                return
            if limit is None or len(tier) < limit:
                tier[tier_key] = len(self._entries)
                self._entries.append(_Entry(event, event.count, sample=[event.summary[:200]]))
                return

    @staticmethod
    def _fold(entry: _Entry, event: Event) -> None:
        entry.count += event.count
        entry.distinct += 1
        if len(entry.sample) < SAMPLE and event.summary[:200] not in entry.sample:
            entry.sample.append(event.summary[:200])

    @property
    def events(self) -> list[Event]:
        return [self._event(e) for e in self._entries]

    @staticmethod
    def _event(entry: _Entry) -> Event:
        e = entry.event
        if entry.distinct == 1:
            return e if e.count == entry.count else e.model_copy(update={"count": entry.count})
        detail: dict[str, DetailValue] = {
            **e.detail,
            "folded_distinct": entry.distinct,
            "folded_sample": list(entry.sample),
        }
        summary = f"{e.summary[:_SUMMARY_CHARS]} (folded: {entry.distinct} distinct)"
        return e.model_copy(update={"count": entry.count, "detail": detail, "summary": summary})

    @property
    def distinct(self) -> int:
        return len(self._entries)


def new_folder(limit: int | None = None, classify: Classify = _no_rule) -> Folder:
    return Folder(classify=classify, exact_limit=EXACT_LIMIT if limit is None else limit)
