"""broadcast: every device ends with the root's buffer.

Input (P, n) (only the root's row is read), output (P, n); S = n x itemsize, busbw factor 1.
"""

from .allreduce import AllReduce
from .registry import register_collective


class Broadcast(AllReduce):
    name = "broadcast"
    perf_name = "broadcast_perf"
    rooted = True
    reduces = False

    def busbw_factor(self, P):
        return 1.0

    def reference(self, data, op, root):
        return data[root][None, :].repeat(data.shape[0], axis=0)

    def initial_content(self, s):
        out = [{} for _ in range(s.P)]
        out[s.root] = {c: (c, 1 << s.root) for c in range(len(s.chunk_off))}
        return out

    def final_content(self, s):
        return [{c: (c, 1 << s.root) for c in range(len(s.chunk_off))} for _ in range(s.P)]


register_collective(Broadcast())
