"""Benchmarks: scripts that measure lutnet against baselines; results land in benchmarks/results/."""
