"""Lightning callbacks of the search: stage switch, temperature schedule, alpha logging,
end-of-epoch checkpoints and per-epoch seeding (exact resume)."""

from callbacks.alpha_logger import AlphaLogger
from callbacks.checkpoint import EpochCheckpoint
from callbacks.reproducible import EpochSeed
from callbacks.stage import StageSwitch
from callbacks.temperature import TemperatureSchedule

__all__ = ["AlphaLogger", "EpochCheckpoint", "EpochSeed", "StageSwitch", "TemperatureSchedule"]
