"""Binding DDP ranks to the cores next to their GPU: the kernel's cpulist format and the split."""

from supernet.accel.cpu_affinity import parse_cpulist, share_of


def test_cpulist_ranges_and_single_cores():
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("5") == [5]


def test_ranks_on_one_node_split_its_cores_without_overlap():
    cores = list(range(16))
    shares = [share_of(cores, rank, [0, 1, 2]) for rank in range(3)]
    assert [len(s) for s in shares] == [5, 5, 6]
    assert sorted(c for s in shares for c in s) == cores
    assert share_of(cores, 3, [1, 3]) == list(range(8, 16))  # the second of two ranks on the node
    assert share_of([0, 1], 1, [0, 1, 2]) == [0, 1]  # more ranks than cores: share them all


def test_the_cli_option_reaches_the_search_strategy():
    from supernet.accel.ddp import search_strategy

    strategy = search_strategy({"strategy": "ddp_spawn", "devices": 2}, bind_cpus=True)
    assert strategy.bind_cpus and strategy._start_method == "spawn"
    assert not search_strategy({"strategy": "ddp", "devices": 2}).bind_cpus
    assert search_strategy({"strategy": "auto", "devices": 1, "accelerator": "cpu"}) is None
