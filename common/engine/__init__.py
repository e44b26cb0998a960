"""The pure engine: Column and DataFrame functions (parsing, checks, annotate, tallies, KPIs).

Imports the contracts only: no storage, no AWS, no settings.
"""
