"""Benchmarks of the shop against bare baselines measured in the same run: `make bench`.

Nothing here ships with the shop: the baseline endpoints live in bench.urls, loaded only by the
gunicorn the benchmark starts (DJANGO_SETTINGS_MODULE=bench.settings).
"""
