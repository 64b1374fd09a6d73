"""Benchmarks and proofs, run by hand (see each script's docstring)."""
