"""Kubernetes names and label values made from anything: a model's file name (hostile: unicode,
hundreds of characters, dots, uppercase) becomes a valid DNS-1123 label or label value.

    dns_label("Ünïcode.Model.ONNX", 20)  -> "nicode-model-onnx"
    label_value("my model.safetensors") -> "my_model.safetensors"
"""

from __future__ import annotations

import re

DNS_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def dns_label(text: str, limit: int = DNS_LABEL_MAX, fallback: str = "model") -> str:
    """`text` as a DNS-1123 label of at most `limit` characters: lowercase ASCII letters and
    digits, runs of anything else one '-', no '-' at either end; `fallback` when nothing is
    left."""
    limit = max(1, min(limit, DNS_LABEL_MAX))
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return out or fallback[:limit]


def label_value(text: str, limit: int = LABEL_VALUE_MAX) -> str:
    """`text` as a label value: ASCII letters, digits, '-', '_' and '.', beginning and ending
    with a letter or a digit, at most `limit` characters ('' when nothing is left, which a
    label value may be)."""
    limit = max(0, min(limit, LABEL_VALUE_MAX))
    out = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    out = re.sub(r"^[^A-Za-z0-9]+", "", out)[:limit]
    return re.sub(r"[^A-Za-z0-9]+$", "", out)


def is_dns_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and bool(DNS_LABEL.match(text))


def is_label_value(text: str) -> bool:
    return len(text) <= LABEL_VALUE_MAX and bool(LABEL_VALUE.match(text))
