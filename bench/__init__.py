"""Benchmarks of the fleet against plain Celery and plain requests (python -m bench)."""
