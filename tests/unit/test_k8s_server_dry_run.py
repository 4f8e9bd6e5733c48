"""The manifests against a real Kubernetes API server, when one is reachable: created with the
server's own dry run (admission and validation run, nothing is stored). None is reachable on
the project's CI machine (the offline schemas in test_kubernetes_manifests.py check them
there), so this runs only where a kube config names a server that answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.backends.base import Job
from runner.backends.kubernetes.manifests import manifests
from runner.backends.kubernetes.settings import settings_from
from runner.policy import Policy


def _api() -> Any:
    """A client of the kube config's server, or a skip saying why there is none."""
    kubernetes = pytest.importorskip("kubernetes")
    try:
        kubernetes.config.load_kube_config()
        client = kubernetes.client.ApiClient()
        kubernetes.client.VersionApi(client).get_code(_request_timeout=5)
    except Exception as e:  # no config, or its server does not answer
        pytest.skip(f"no reachable Kubernetes API server ({type(e).__name__})")
    return client


def test_the_server_accepts_every_manifest(tmp_path: Path) -> None:
    client = _api()
    from kubernetes import utils

    model = tmp_path / "model.onnx"
    model.write_bytes((Path(__file__).parents[2] / "examples" / "tiny.onnx").read_bytes())
    settings = settings_from({"model_root": tmp_path, "namespace": "default"})
    docs = manifests([Job(0, model, "", Policy())], "0123456789ab", settings)
    for doc in docs:  # raises FailToCreateError with the server's reasons when one is refused
        utils.create_from_dict(client, doc, namespace="default", dry_run="All")
