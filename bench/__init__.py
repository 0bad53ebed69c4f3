"""Benchmarks: scripts that print their figures, never assertions on speed."""

from deploy.demo import use_demo_settings

use_demo_settings()  # benchmarks run the hub on the demo partners
