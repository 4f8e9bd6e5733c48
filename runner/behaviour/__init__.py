"""Behaviour: probes, behavioural diffing against a base model, baselines."""
