"""The one build hook: the wheel carries the sandbox image's sources.

The sources stay in sandbox_images/ at the top of the checkout. Building a wheel copies the
files that `airlock image build` and the sandbox read into runner/controller/image_sources/,
where runner/controller/images.py looks first; an editable install reads sandbox_images/ in
place. Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import FileError

SOURCES = Path(__file__).resolve().parent / "sandbox_images"
TARGET = ("runner", "controller", "image_sources")
# What images.py hashes into the tag and builds from, and the sandbox's seccomp profiles. The
# host-only helpers (lock.sh, the requirements.in files, seccomp/generate.py, the runsc-airlock
# runtime wrapper that scripts/engine.sh installs) stay behind.
PATTERNS = (
    "Dockerfile",
    "entrypoint.sh",
    "requirements.lock",
    "bootstrap-base.sh",
    "seccomp/*.json",
    # the framework images (runner/controller/framework_images.py)
    "*/Dockerfile",
    "*/requirements.lock",
)


def image_sources() -> list[str]:
    """The files to carry, relative to sandbox_images/ (each pattern must match)."""
    found: list[str] = []
    for pattern in PATTERNS:
        matches = sorted(
            p.relative_to(SOURCES).as_posix() for p in SOURCES.glob(pattern) if p.is_file()
        )
        if not matches:
            raise FileError(f"sandbox_images/{pattern} is missing: the wheel would lack it")
        found.extend(matches)
    return found


class BuildPy(build_py):
    """build_py, then a fresh copy of the image sources into the build directory."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib, *TARGET)
        if target.exists():
            shutil.rmtree(target)  # no file removed from sandbox_images/ lingers in the wheel
        for rel in image_sources():
            dest = target / rel
            self.mkpath(str(dest.parent))
            self.copy_file(str(SOURCES / rel), str(dest))

    def get_outputs(self, include_bytecode: Any = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [str(Path(self.build_lib, *TARGET, rel)) for rel in image_sources()]
        return outputs


setup(cmdclass={"build_py": BuildPy})
