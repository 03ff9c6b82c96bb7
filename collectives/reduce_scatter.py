"""reduce_scatter: device d ends with block d of the reduction of all devices' inputs.

Input (P, P*m), output (P, m); S = P x m x itemsize (the input), busbw = algbw x (P-1)/P.
"""

import numpy as np

from .collective import Collective, full_mask, np_reduce, slot_of


class ReduceScatter(Collective):
    name = "reduce_scatter"
    perf_name = "reduce_scatter_perf"
    per_device_blocks = True
    reduces = True

    def busbw_factor(self, P):
        return (P - 1) / P

    def buffer_length(self, P, count):
        return P * count

    def input_shape(self, P, count):
        return (P, P * count)

    def count_from_shape(self, shape, P):
        if shape[1] % P:
            raise ValueError(f"reduce_scatter input has {shape[1]} elements per device; expected a multiple "
                             f"of the device count P={P} (P blocks of m, one reduced onto each device)")
        return shape[1] // P

    def nbytes(self, P, count, itemsize):
        return P * count * itemsize

    def count_for_nbytes(self, nbytes, P, itemsize):
        return nbytes // (P * itemsize)

    def extract(self, buf, P, count, root, first=0):
        k = buf.shape[0]
        rows = np.arange(k)
        return buf.reshape(k, P, count)[rows, first + rows].copy()

    def reference(self, data, op, root, reducer=np_reduce):
        P = data.shape[0]
        m = data.shape[1] // P
        total = reducer(data, op)
        return total.reshape(P, m)

    def initial_content(self, s):
        return [{c: (c, 1 << d) for c in range(len(s.chunk_off))} for d in range(s.P)]

    def final_content(self, s):
        slot = slot_of(s, s.count)
        return [{c: (c, full_mask(s.P)) for c in range(len(s.chunk_off)) if slot[c] == d} for d in range(s.P)]


# Imported after the class: the registry imports every spec module (scatter subclasses this one),
# so a first import of this module must define the class before the registry's imports run.
from .registry import register_collective  # noqa: E402

register_collective(ReduceScatter())
