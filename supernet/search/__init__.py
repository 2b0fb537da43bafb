"""The search core: what a search means, with no speed work and no command line.

``mixed_op`` (an edge and the ST scores), ``network`` (the
supernet), ``arch_params`` (every alpha and the sampler), ``relaxations`` (the methods, registered
objects), ``step`` (one search step without Lightning), ``module`` (the Lightning module that
wraps it; its plumbing in ``hooks``), ``extract`` (a checkpoint to an ArchSpec). Reads spaces from
``supernet.space`` (the declarative macro-DAG, shared with the latency wing); imports ops, losses
and the latency wing; never ``supernet.accel`` or ``supernet.commands``.
"""
