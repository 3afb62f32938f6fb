"""Loopback emulators of real providers for end-to-end tests (they share no code with
``connectors/``; they may share ``tests/emulators/common.py``)."""
