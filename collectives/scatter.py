"""scatter: device d ends with block d of the root's input.

Input (P, P*m) (only the root's row is read), output (P, m). The buffer has one slot of m elements
per device, as reduce_scatter's: the root holds all P, device d ends with its slot d. nccl-tests'
``scatter_perf`` (``src/scatter.cu``): ``recvcount = (count/nranks) & -(16/eltSize)``, ``sendcount =
recvcount x nranks``, so S = P x m x itemsize (the root's send buffer, the size column) and the
count column is m; ``ScatterGetBw``: algbw = S / time, busbw = algbw x (P-1)/P; ``-r`` picks the
root. NCCL runs it as grouped ``ncclSend``/``ncclRecv`` (``ncclScatter`` from 2.28): the root sends
every block at once. hccl_test's ``scatter_test`` is the same call (``HcclScatter``).

>>> import numpy as np, collectives
>>> data = np.zeros((3, 6), np.int32); data[2] = np.arange(6)
>>> collectives.run("scatter", data, "direct", root=2)
array([[0, 1],
       [2, 3],
       [4, 5]], dtype=int32)
"""

import numpy as np

from .collective import slot_of
from .reduce_scatter import ReduceScatter
from .registry import register_collective


class Scatter(ReduceScatter):
    name = "scatter"
    perf_name = "scatter_perf"
    reduces = False
    rooted = True

    def count_from_shape(self, shape, P):
        if shape[1] % P:
            raise ValueError(f"scatter input has {shape[1]} elements per device; expected a multiple of the "
                             f"device count P={P} (the root's P blocks of m, one sent to each device)")
        return shape[1] // P

    def reference(self, data, op, root):
        P = data.shape[0]
        raw = np.ascontiguousarray(data[root]).view(np.uint8)   # as bytes: a structured type's padding too
        return raw.reshape(P, raw.size // P).copy().view(data.dtype)

    def initial_content(self, s):
        out = [{} for _ in range(s.P)]
        out[s.root] = {c: (c, 1 << s.root) for c in range(len(s.chunk_off))}
        return out

    def final_content(self, s):
        slot = slot_of(s, s.count)
        return [{c: (c, 1 << s.root) for c in range(len(s.chunk_off)) if slot[c] == d} for d in range(s.P)]


register_collective(Scatter())
