"""Lightning callbacks: alpha logging, end-of-epoch checkpoints and per-epoch seeding (exact resume).
The search's warm-up and Gumbel's temperature are schedules of the search itself, not callbacks."""

from callbacks.alpha_logger import AlphaLogger
from callbacks.checkpoint import EpochCheckpoint
from callbacks.reproducible import EpochSeed

__all__ = ["AlphaLogger", "EpochCheckpoint", "EpochSeed"]
