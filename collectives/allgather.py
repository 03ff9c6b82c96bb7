"""allgather: every device ends with all devices' inputs, concatenated in device order.

Input (P, m), output (P, P*m); the buffer has one slot of m elements per device.
S = P x m x itemsize (the output), busbw = algbw x (P-1)/P.
"""

import numpy as np

from .collective import Collective, slot_of


class AllGather(Collective):
    name = "allgather"
    perf_name = "all_gather_perf"
    per_device_blocks = True

    def busbw_factor(self, P):
        return (P - 1) / P

    def buffer_length(self, P, count):
        return P * count

    def input_shape(self, P, count):
        return (P, count)

    def nbytes(self, P, count, itemsize):
        return P * count * itemsize

    def count_for_nbytes(self, nbytes, P, itemsize):
        return nbytes // (P * itemsize)

    def load(self, data, P, count, root, first=0):
        buf = np.zeros((data.shape[0], P * count), dtype=data.dtype)
        for i, d in enumerate(range(first, first + data.shape[0])):
            buf[i, d * count:(d + 1) * count] = data[i]
        return buf

    def reference(self, data, op, root):
        return data.reshape(1, -1).repeat(data.shape[0], axis=0)

    def initial_content(self, s):
        slot = slot_of(s, s.count)
        n = len(s.chunk_off)
        return [{c: (d * n + c, 1 << d) for c in range(n) if slot[c] == d} for d in range(s.P)]

    def final_content(self, s):
        slot = slot_of(s, s.count)
        n = len(s.chunk_off)
        want = {c: (int(slot[c]) * n + c, 1 << int(slot[c])) for c in range(n)}
        return [dict(want) for _ in range(s.P)]


# Imported after the class: the registry imports every spec module (gather and hypercube subclass this one),
# so a first import of this module must define the class before the registry's imports run.
from .registry import register_collective  # noqa: E402

register_collective(AllGather())
