"""Fixtures shared by the unit tests."""

from tests.unit.test_signing import pki  # noqa: F401  (a key pair, a CA and a leaf certificate)
