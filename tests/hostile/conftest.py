from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _image(sandbox_image: tuple[str, str]) -> None:
    """Every hostile test runs against the real engine and the current image."""
