"""Where and how the Kubernetes backend runs: the namespace, the images in the user's registry,
the volumes that carry models in and outcomes out. Each field is one `airlock eval` option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.backends.kubernetes.names import is_dns_label
from runner.errors import UsageError


def _local_image() -> str:
    """The sandbox image's local tag: what dry-run shows when no registry image is named."""
    from runner.controller import images

    return images.current_tag()


class KubernetesSettings(BaseModel):
    """The Kubernetes backend's settings (all but the volumes have defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default="airlock", description="where the Jobs and the policy go")
    image: str = Field(
        default_factory=_local_image,
        description="the sandbox image in your registry (airlock image build, then push)",
    )
    framework_images: dict[str, str] = Field(
        default_factory=dict,
        description="the framework sandbox images in your registry, by framework "
        "(tensorflow=REF): the image a model whose format needs one runs in (default its "
        "local tag)",
    )
    controller_image: str = Field(
        default="airlock-controller:latest",
        description="an image with Airlock installed as a wheel: the in-pod controller",
    )
    runtime_class: str = Field(default="gvisor", description="the RuntimeClass (gVisor's runsc)")
    model_volume: str = Field(
        default="airlock-models", description="the PVC holding the models (mounted read-only)"
    )
    model_root: Path = Field(
        default=Path("."), description="where the model volume's root is on this machine"
    )
    results_volume: str = Field(
        default="airlock-results", description="the PVC the Jobs write their outcomes to"
    )
    results_root: Path = Field(
        default=Path("."), description="where the results volume's root is on this machine"
    )
    seccomp_profile: str = Field(
        default="airlock",
        description="the directory of Airlock's seccomp profiles under the kubelet's seccomp "
        "root on every node ('' for the runtime's default profile)",
    )
    controller_cpu: str = Field(default="500m", description="the controller container's CPU")
    controller_memory_bytes: int = Field(default=512 << 20, ge=64 << 20)
    ttl_seconds: int = Field(default=3600, ge=0, description="finished Jobs are deleted after")
    startup_grace_s: int = Field(
        default=120,
        ge=0,
        description="added to the policy's wall limit for the Pod's deadline (scheduling, "
        "pulling the images, the controller's pre-flight)",
    )
    poll_s: float = Field(default=2.0, gt=0, description="how often the Jobs are listed")
    max_outcome_bytes: int = Field(default=256 << 20, ge=1 << 20)
    confirm_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="how long the driver waits for the kubelet to report the sandbox "
        "container terminated once its outcome is in",
    )
    dry_run: bool = False

    @field_validator("namespace", "model_volume", "results_volume", "runtime_class")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not is_dns_label(v):
            raise ValueError(f"{v!r} is not a valid Kubernetes name (DNS-1123 label)")
        return v

    @field_validator("image", "controller_image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"{v!r} is not an image reference")
        return v

    @field_validator("framework_images")
    @classmethod
    def _frameworks(cls, v: dict[str, str]) -> dict[str, str]:
        from runner.worker.shared import images as table

        for framework, ref in v.items():
            if framework not in table.FRAMEWORKS:
                raise ValueError(
                    f"{framework!r} is not a framework image Airlock has "
                    f"({', '.join(sorted(table.FRAMEWORKS))})"
                )
            cls._image(ref)
        return v

    def image_for(self, fmt: str) -> str:
        """The sandbox image a model of this format runs in: the default one, or the framework
        image its format needs (named, else its local tag)."""
        from runner.controller import framework_images
        from runner.worker.shared import images as table

        framework = table.framework_for(fmt)
        if not framework:
            return self.image
        return self.framework_images.get(framework) or framework_images.current_tag(framework)


def settings_from(fields: dict[str, Any]) -> KubernetesSettings:
    """The settings from the options given; a field that does not validate is one line."""
    try:
        return KubernetesSettings(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        raise UsageError(f"kubernetes {where}: {first['msg']}") from None
