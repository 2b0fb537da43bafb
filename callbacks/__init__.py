"""Lightning callbacks of the search: stage switch, temperature schedule, alpha logging."""

from callbacks.alpha_logger import AlphaLogger
from callbacks.stage import StageSwitch
from callbacks.temperature import TemperatureSchedule

__all__ = ["AlphaLogger", "StageSwitch", "TemperatureSchedule"]
