"""The Kubernetes Jobs backend: one Job per model, in a namespace, with gVisor, a deny-all
NetworkPolicy, the policy's limits and the Docker backend's hardening (docs/kubernetes.md).
The `kubernetes` library (pip install 'airlock[kubernetes]') is imported only to talk to a
cluster: the manifests (runner.backends.kubernetes.manifests.manifests) and --dry-run need
none."""

from runner.backends.kubernetes.backend import KubernetesBackend
from runner.backends.kubernetes.manifests import dry_run_text
from runner.backends.kubernetes.plan import plan
from runner.backends.kubernetes.settings import KubernetesSettings

__all__ = ["KubernetesBackend", "KubernetesSettings", "dry_run_text", "plan"]
