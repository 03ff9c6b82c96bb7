"""hypercube: nccl-tests' allgather by exchanges along the dimensions of a hypercube.

Every device ends with all devices' inputs in device order, as allgather: input (P, m), output
(P, P*m), one slot of m elements per device. nccl-tests' ``hypercube_perf`` (``src/hypercube.cu``):
for ``mask = 1, 2, 4, ... < nranks`` each rank exchanges the ``mask`` blocks it holds (from
``rank & ~(mask-1)``) with rank ``rank ^ mask``, doubling what it holds: log2(P) steps, so P must be
a power of two (nccl-tests prints ``nRanks P is not a power of 2, skipping`` and runs nothing; ccemu
raises a ``ValueError`` instead). Sizes: ``base = (count/nranks) & -(16/eltSize)``, ``recvcount =
base x nranks``, so S = P x m x itemsize (the size column) and the count column is m.
``HyperCubeGetBw``: algbw = m x itemsize x (P-1) / time (the bytes a rank receives, not S; see
:meth:`algbw_factor`), busbw = algbw (factor 1), that is ``S / time x (P-1)/P``:
:meth:`busbw_factor` relative to ``S / time`` as ccemu's other collectives.

>>> import numpy as np, collectives
>>> collectives.run("hypercube", np.arange(4, dtype=np.int32).reshape(4, 1), "recursive_doubling")[3]
array([0, 1, 2, 3], dtype=int32)
>>> collectives.run("hypercube", np.zeros((3, 1), np.int32), "recursive_doubling")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: hypercube needs a power-of-two device count, got P=3 (nccl-tests' hypercube_perf skips it: ...)
"""

from .allgather import AllGather
from .registry import register_collective


class HyperCube(AllGather):
    name = "hypercube"
    perf_name = "hypercube_perf"

    def busbw_factor(self, P):
        return (P - 1) / P

    def algbw_factor(self, P):
        return (P - 1) / P

    def supports(self, P):
        return P >= 1 and P & (P - 1) == 0

    def check_devices(self, P):
        if not self.supports(P):
            raise ValueError(f"hypercube needs a power-of-two device count, got P={P} (nccl-tests' hypercube_perf "
                             f"skips it: \"nRanks {P} is not a power of 2\")")
        return P


register_collective(HyperCube())
