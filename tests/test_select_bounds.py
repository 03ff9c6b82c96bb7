"""``best``'s pruning with partial lower bounds (select.rank): a candidate whose first bound is only a
partial sum is timed after the others, and only if its refined bound does not exceed the fastest."""

from types import SimpleNamespace

from collectives import select
from topologies import ring


def test_a_partial_bound_is_refined_before_its_candidate_is_timed():
    topo = ring(4, bw_GBps=10.0, lat_us=1.0)
    timed, refined = [], []

    def timer(name, params):
        timed.append(name)
        return SimpleNamespace(time_s=1e-3, params=params)

    def bound(name, params, stop_above=None):
        if name != "ring":
            return 1e-4, True
        if stop_above is None:
            return 0.0, False          # a partial sum: smaller than every complete bound
        refined.append(stop_above)
        return 2e-3, True              # above the fastest time found

    trials = select.rank("allreduce", 1 << 20, topo, timer, bound=bound)
    rings = [t for t in trials if t.algorithm == "ring"]
    assert rings and all(t.result is None and t.skipped.startswith("pruned") for t in rings)
    assert "ring" not in timed and timed                  # the others were timed, the ring candidates not
    assert refined and all(x == 1e-3 for x in refined)    # refined against the fastest time found


def test_a_partial_bound_below_the_fastest_is_timed():
    topo = ring(4, bw_GBps=10.0, lat_us=1.0)
    timed = []

    def timer(name, params):
        timed.append(name)
        return SimpleNamespace(time_s=1e-3 if name != "ring" else 5e-4, params=params)

    def bound(name, params, stop_above=None):
        return (1e-4, True) if name != "ring" else ((0.0, False) if stop_above is None else (4e-4, True))

    trials = select.rank("allreduce", 1 << 20, topo, timer, bound=bound)
    assert trials[0].algorithm == "ring" and "ring" in timed
