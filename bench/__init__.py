"""fluxrate benchmarks: ``make bench`` / ``python -m bench``. See docs/performance.md."""
