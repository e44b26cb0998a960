"""Thin job entrypoints: ``python -m jobs.validate``, ``python -m jobs.transform``, ``python -m jobs.generate``."""
