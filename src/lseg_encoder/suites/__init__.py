"""Suites: pure pipelines (the one sweep, timing, compare, bench, verify) that compute and return
dataclasses; writing them is `reports`' job."""
