"""Speed work that plugs in from above and changes no result: CUDA graphs (an op runner,
``supernet.runner``), the Triton CTC (registered with ``losses.ctc``), the gradient all-reduce of
several ranks (``SearchStep.sync``), CPU pinning, and the search's DDP strategy. Nothing in the
model, the losses or the search core imports this package."""
