"""reduce: the root ends with the reduction of all devices' buffers.

Input (P, n), output (n,) (the root's result); S = n x itemsize, busbw factor 1.
"""

from .collective import full_mask, np_reduce
from .registry import register_collective
from .allreduce import AllReduce


class Reduce(AllReduce):
    name = "reduce"
    perf_name = "reduce_perf"
    rooted = True

    def busbw_factor(self, P):
        return 1.0

    def extract(self, buf, P, count, root, first=0):
        return buf[root - first].copy() if first <= root < first + buf.shape[0] else None

    def reference(self, data, op, root, reducer=np_reduce):
        return reducer(data, op)

    def final_content(self, s):
        out = [{} for _ in range(s.P)]
        out[s.root] = {c: (c, full_mask(s.P)) for c in range(len(s.chunk_off))}
        return out


register_collective(Reduce())
