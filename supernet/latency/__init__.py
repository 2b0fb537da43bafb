"""Latency tables and the hardware objective of a search.

- ``settings``: where a table is measured (device, runtime, dtype, threads, input size, clock);
- ``slots``: one op at one position of a network, the table's key;
- ``table``: ``LatencyTable``, its file format, and predictions of architectures and spaces;
- ``costs``: ``SpaceCosts``, a space's costs per candidate (expected, one path's, within a budget);
- ``measure``: timing ops inside running networks (``supernet profile``, ``supernet latency-check``);
- ``ort``: the same in onnxruntime, on ops and networks exported to ONNX (``--runtime onnxruntime``);
- ``objective``: ``HardwareObjective``, the penalty a search adds to CTC and the path it picks.
"""

from supernet.latency.costs import SpaceCosts, choose_path, over_budget, param_costs
from supernet.latency.measure import (
    CLOCKS,
    DEFAULT_SETTLE_S,
    NetworkRunner,
    covering_archs,
    default_settle,
    measure_networks,
    merge,
    network_runners,
    profile,
    profile_space,
    settle,
    static_entry,
    use_threads,
)
from supernet.latency.objective import HardwareObjective
from supernet.latency.settings import (
    CHECKED_KEYS,
    CLOCKS_NAMES,
    DTYPES,
    RUNTIMES,
    LatencyTableError,
    device_name,
    make_settings,
)
from supernet.latency.slots import (
    Position,
    Slot,
    arch_slots,
    network_positions,
    network_slots,
    space_positions,
    space_slots,
)
from supernet.latency.table import FORMAT, METRICS, VERSION, LatencyTable, check_entries

__all__ = [
    "CHECKED_KEYS",
    "CLOCKS",
    "CLOCKS_NAMES",
    "DEFAULT_SETTLE_S",
    "DTYPES",
    "FORMAT",
    "METRICS",
    "RUNTIMES",
    "VERSION",
    "HardwareObjective",
    "LatencyTable",
    "LatencyTableError",
    "NetworkRunner",
    "Position",
    "Slot",
    "SpaceCosts",
    "arch_slots",
    "check_entries",
    "choose_path",
    "covering_archs",
    "default_settle",
    "device_name",
    "make_settings",
    "measure_networks",
    "merge",
    "network_runners",
    "network_positions",
    "network_slots",
    "over_budget",
    "param_costs",
    "profile",
    "profile_space",
    "settle",
    "space_positions",
    "space_slots",
    "static_entry",
    "use_threads",
]
