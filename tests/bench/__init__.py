"""Benchmark tooling (`make bench`): lives with the tests, outside the installed package and the image."""
