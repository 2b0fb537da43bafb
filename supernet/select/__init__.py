"""Discrete search over a trained supernet: pick a path for each budget without searching again.

``problem`` says what is searched (a space's edges, a cached score of a path, its cost and a
budget); ``strategies/`` holds the registered strategies that propose paths; the command is
``supernet select`` (``supernet/commands/select.py``).
"""
