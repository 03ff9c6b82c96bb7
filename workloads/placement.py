"""Where each parallel rank sits on the topology, and the device groups of every communicator.

Devices are numbered as the presets number them, node-major (the devices of server 0 first). A
device's index is a mixed-radix number over the parallel dimensions in ``order``, innermost
first. The default, ``("tp", "cp", "ep", "dp", "pp")``, is Megatron-LM's rank order: tensor
parallelism innermost (inside a server when ``tp`` is at most its size), then context parallelism,
then the expert-parallel part of data parallelism (across servers once ``tp x cp`` fills one),
the rest of data parallelism, and pipeline stages outermost. Any permutation may be given.

Groups (each a list of device indices, ascending, one per communicator):

- ``tp``, ``cp``, ``ep``: the devices that differ only in that coordinate;
- ``dp``: gradients of dense weights, over data and context parallelism (``ep`` x the rest of
  ``dp`` x ``cp`` devices, as Megatron-LM reduces them);
- ``edp``: gradients of expert weights, over the data-parallel part outside expert parallelism and
  ``cp``;
- ``pp``: the pairs of devices of adjacent stages (``(stage s, stage s+1)``, the same other coordinates).

>>> from workloads.parallel import Parallelism
>>> lay = Layout(Parallelism(tp=2, pp=2, dp=4, ep=2))
>>> lay.groups("tp")[:2], lay.groups("ep")[:2], lay.groups("dp")[0], lay.groups("edp")[0]
([[0, 1], [2, 3]], [[0, 2], [1, 3]], [0, 2, 4, 6], [0, 4])
>>> lay.groups("pp")[:2], lay.stage(9)
([[0, 8], [1, 9]], 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIMS = ("tp", "cp", "ep", "dp", "pp")
DEFAULT_ORDER = DIMS

#: Which coordinates vary inside a group of each kind.
GROUP_DIMS = {"tp": ("tp",), "cp": ("cp",), "ep": ("ep",), "dp": ("ep", "dp", "cp"), "edp": ("dp", "cp"),
              "pp": ("pp",)}
KINDS = tuple(GROUP_DIMS)


@dataclass(frozen=True)
class Placement:
    """The rank order (innermost first); see the module docstring."""

    order: tuple = DEFAULT_ORDER

    def __post_init__(self):
        order = tuple(self.order) if not isinstance(self.order, str) else (self.order,)
        if sorted(order) != sorted(DIMS):
            raise ValueError(f"placement order {list(order)!r}; expected a permutation of {', '.join(DIMS)}")
        object.__setattr__(self, "order", order)

    def as_dict(self) -> dict:
        return {"order": list(self.order)}


def placement_from_dict(doc) -> Placement:
    if doc is None:
        return Placement()
    if not isinstance(doc, dict) or set(doc) - {"order"}:
        bad = sorted(set(doc) - {"order"})[0] if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"placement: unknown key {bad!r}; expected order (a permutation of {', '.join(DIMS)})")
    return Placement(tuple(doc.get("order", DEFAULT_ORDER)))


class Layout:
    """The device groups of a resolved :class:`~workloads.parallel.Parallelism` (``dp`` known)."""

    def __init__(self, parallel, placement: Placement | None = None):
        if parallel.dp is None:
            raise ValueError("the parallelism has no dp yet; resolve it against a device count first")
        placement = placement or Placement()
        self.size = {"tp": parallel.tp, "cp": parallel.cp, "ep": parallel.ep, "dp": parallel.dp // parallel.ep,
                     "pp": parallel.pp}
        self.order = placement.order
        self.stride = {}
        s = 1
        for d in self.order:
            self.stride[d] = s
            s *= self.size[d]
        self.devices = s
        idx = np.arange(s)
        self.coord = {d: (idx // self.stride[d]) % self.size[d] for d in DIMS}
        self._groups = {}

    def stage(self, device: int) -> int:
        return int(self.coord["pp"][device])

    def groups(self, kind: str) -> list:
        """The groups of ``kind`` (see the module docstring), each ascending, ordered by first device."""
        if kind not in GROUP_DIMS:
            raise ValueError(f"unknown group kind {kind!r}; expected one of {', '.join(KINDS)}")
        hit = self._groups.get(kind)
        if hit is not None:
            return hit
        vary = GROUP_DIMS[kind]
        if kind == "pp":
            out = []
            others = [d for d in DIMS if d != "pp"]
            base = np.zeros(self.devices, np.int64)
            for d in others:
                base += self.coord[d] * self.stride[d]
            for s in range(self.size["pp"] - 1):
                lo = np.flatnonzero(self.coord["pp"] == s)
                out += [[int(a), int(a + self.stride["pp"])] for a in lo]
        else:
            key = np.zeros(self.devices, np.int64)
            for d in DIMS:
                if d not in vary:
                    key = key * self.size[d] + self.coord[d]
            order = np.lexsort((np.arange(self.devices), key))
            k = key[order]
            cuts = np.flatnonzero(np.diff(k)) + 1
            out = [g.tolist() for g in np.split(order, cuts)]
            out.sort(key=lambda g: g[0])
        self._groups[kind] = out
        return out

    def group_size(self, kind: str) -> int:
        if kind == "pp":
            return 2
        n = 1
        for d in GROUP_DIMS[kind]:
            n *= self.size[d]
        return n
