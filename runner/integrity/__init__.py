"""Integrity: signatures, provenance and the ML-BOM."""
