"""Batch evaluation: many untrusted checkpoints, a fresh sandbox each."""
