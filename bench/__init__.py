"""Benchmarks: scripts that print their figures, never assertions on speed."""
