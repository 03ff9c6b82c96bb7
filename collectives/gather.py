"""gather: the root ends with every device's input, concatenated in device order.

Input (P, m), output (P*m,) (the root's result); the buffer has one slot of m elements per device,
as allgather's. nccl-tests' ``gather_perf`` (``src/gather.cu``): ``sendcount = (count/nranks) &
-(16/eltSize)``, ``recvcount = sendcount x nranks``, so S = P x m x itemsize (the root's receive
buffer, the size column) and the count column is m; ``GatherGetBw``: algbw = S / time, busbw =
algbw x (P-1)/P; ``-r`` picks the root (``all``: every root in turn). NCCL runs it as grouped
``ncclSend``/``ncclRecv`` (``ncclGather`` from 2.28): every device sends its block to the root at once.

>>> import numpy as np, collectives
>>> collectives.run("gather", np.arange(6, dtype=np.int32).reshape(3, 2), "direct", root=1)
array([0, 1, 2, 3, 4, 5], dtype=int32)
"""

import numpy as np

from .allgather import AllGather
from .collective import slot_of
from .registry import register_collective


class Gather(AllGather):
    name = "gather"
    perf_name = "gather_perf"
    rooted = True

    def extract(self, buf, P, count, root, first=0):
        return buf[root - first].copy() if first <= root < first + buf.shape[0] else None

    def reference(self, data, op, root):
        raw = np.ascontiguousarray(data).view(np.uint8)   # as bytes: a structured type's padding moves too
        return raw.reshape(-1).copy().view(data.dtype)

    def final_content(self, s):
        slot = slot_of(s, s.count)
        n = len(s.chunk_off)
        out = [{} for _ in range(s.P)]
        out[s.root] = {c: (int(slot[c]) * n + c, 1 << int(slot[c])) for c in range(n)}
        return out


register_collective(Gather())
