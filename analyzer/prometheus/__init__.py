"""Talking to Prometheus: the range reader, label selectors, a local Prometheus for the demo and tests."""
