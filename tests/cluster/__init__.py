"""Tests of the Ray backend on a real multi-node Ray cluster on this machine."""
