"""allreduce: every device ends with the reduction of all devices' buffers.

Input (P, n), output (P, n); nccl-tests size S = n x itemsize, busbw = algbw x 2(P-1)/P.
"""

from .collective import Collective, full_mask, np_reduce


class AllReduce(Collective):
    name = "allreduce"
    perf_name = "all_reduce_perf"
    reduces = True

    def busbw_factor(self, P):
        return 2.0 * (P - 1) / P

    def buffer_length(self, P, count):
        return count

    def input_shape(self, P, count):
        return (P, count)

    def nbytes(self, P, count, itemsize):
        return count * itemsize

    def count_for_nbytes(self, nbytes, P, itemsize):
        return nbytes // itemsize

    def reference(self, data, op, root, reducer=np_reduce):
        return reducer(data, op)[None, :].repeat(data.shape[0], axis=0)

    def initial_content(self, s):
        return [{c: (c, 1 << d) for c in range(len(s.chunk_off))} for d in range(s.P)]

    def final_content(self, s):
        return [{c: (c, full_mask(s.P)) for c in range(len(s.chunk_off))} for _ in range(s.P)]


# Imported after the class: the registry imports every spec module (broadcast and reduce subclass this one),
# so a first import of this module must define the class before the registry's imports run.
from .registry import register_collective  # noqa: E402

register_collective(AllReduce())
