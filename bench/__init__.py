"""Cleave's benchmarks: numbers and ratios against baselines measured in the same run.

Nothing here passes or fails on time. ``python -m bench.run`` runs everything and writes
``bench/RESULTS.md``; ``python -m bench.run --quick`` is a smoke run that prints one JSON
object last. See ``bench/README.md`` for what each number means.
"""
