"""afmwatch benchmarks: one command per measurement, results written into BENCHMARKS.md.

Run them all with `make bench` (or `python -m benchmarks.run_all`); each script also runs alone,
e.g. `python -m benchmarks.forward_limit`, and has a `--quick` smoke mode that CI runs.
"""
