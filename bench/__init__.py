"""greenroom's benchmarks, each runnable as `python -m bench.NAME`."""
