"""Evaluation jobs: data sets stored by content hash, jobs run in chunks in the background on the device
worker, and every finished chunk committed to a database (docs/jobs.md)."""
