"""Bench tier: the benchmark harness (benchmarks/run.py --quick) runs and reports every metric."""
