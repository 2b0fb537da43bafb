"""The command line: one module per ``supernet`` command (``cli`` dispatches). Commands read
arguments, call the search, latency and data wings, and write run folders."""
