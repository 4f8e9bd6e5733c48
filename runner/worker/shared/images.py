"""Which sandbox image a format needs: the one table, read by the host (which image it starts
for a model, runner.controller.framework_images) and by the worker (what a loader says when
its library is not in the image it runs in).

The default image holds what loads most models. A framework image is the default image plus
one heavy framework (TensorFlow), built on demand the first time a model needs it. A framework
image's Dockerfile sets AIRLOCK_IMAGE to its name; the default image sets nothing.

Standard library only: the worker imports this.
"""

from __future__ import annotations

import os

from runner.worker.shared.formats import Format

DEFAULT = "default"
IMAGE_ENV = "AIRLOCK_IMAGE"

# framework image -> what it adds, as a person names it
FRAMEWORKS: dict[str, str] = {"tensorflow": "TensorFlow"}

# format -> the framework image it needs (a format not here loads in the default image)
FORMAT_FRAMEWORKS: dict[Format, str] = {Format.SAVEDMODEL: "tensorflow"}

# how a message names a model of the format
_FORMAT_NAMES: dict[Format, str] = {Format.SAVEDMODEL: "a TensorFlow SavedModel"}


def framework_for(fmt: str) -> str | None:
    """The framework image a format needs, or None for the default image."""
    try:
        return FORMAT_FRAMEWORKS.get(Format(fmt))
    except ValueError:
        return None


def build_command(framework: str) -> str:
    return f"airlock image build --with {framework}"


def running_image() -> str:
    """The image this process runs in (in the sandbox): a framework's name, or 'default'."""
    return os.environ.get(IMAGE_ENV) or DEFAULT


def model_name(fmt: str) -> str:
    try:
        return _FORMAT_NAMES.get(Format(fmt), f"a {fmt} model")
    except ValueError:
        return f"a {fmt} model"


def wrong_image(fmt: str, running: str | None = None) -> str:
    """One line: the image this format needs, the one the sandbox runs, and the command that
    builds the right one. The worker's LoadError when its framework cannot be imported."""
    framework = framework_for(fmt) or DEFAULT
    running = running or running_image()
    lacks = f" (no {FRAMEWORKS[framework]})" if framework in FRAMEWORKS else ""
    return (
        f"{model_name(fmt)} needs the {framework} sandbox image, and this sandbox runs the "
        f"{running} image{lacks}: build it with '{build_command(framework)}'"
    )
