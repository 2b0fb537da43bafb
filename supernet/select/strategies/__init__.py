"""Registered selection strategies, one a file (``base.py`` has the protocol)."""
