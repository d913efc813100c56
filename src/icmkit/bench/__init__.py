"""Benchmarking: metrics, Bjøntegaard deltas, result files."""
