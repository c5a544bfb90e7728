"""Reproducible benchmarks that print figures; see README, Performance."""
