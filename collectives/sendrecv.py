"""sendrecv: every device sends its buffer to the next device and receives the previous one's.

Input (P, n), output (P, n): device d ends with device ``(d-1) mod P``'s input (one device sends to
itself). The buffer holds the send block, then the receive block. nccl-tests' ``sendrecv_perf``
(``src/sendrecv.cu``): each rank ``ncclSend``s ``count`` elements to ``(rank+1) % nranks`` and
``ncclRecv``s them from ``(rank-1+nranks) % nranks`` in one group; ``sendcount = recvcount = count``
(no alignment), so S = n x itemsize and the count column is n; ``SendRecvGetBw``: algbw = S / time,
busbw factor 1. Its rows name the ``-o`` op (it passes its ops to ``TimeTest``: ``-o all`` repeats
the sweep per op) although nothing is reduced; root -1; the in-place ``#wrong`` is ``N/A``
(``reportErrors = in_place ? 0 : 1``).

>>> import numpy as np, collectives
>>> collectives.run("sendrecv", np.arange(6, dtype=np.int32).reshape(3, 2), "direct")
array([[4, 5],
       [0, 1],
       [2, 3]], dtype=int32)
"""

import numpy as np

from .collective import Collective
from .registry import register_collective


class SendRecv(Collective):
    name = "sendrecv"
    perf_name = "sendrecv_perf"
    checks_in_place = False
    op_column = True

    def busbw_factor(self, P):
        return 1.0

    def buffer_length(self, P, count):
        return 2 * count

    def input_shape(self, P, count):
        return (P, count)

    def nbytes(self, P, count, itemsize):
        return count * itemsize

    def count_for_nbytes(self, nbytes, P, itemsize):
        return nbytes // itemsize

    def extract(self, buf, P, count, root, first=0):
        return buf[:, count:2 * count].copy()

    def reference(self, data, op, root):
        raw = np.ascontiguousarray(data).view(np.uint8)   # as bytes: a structured type's padding moves too
        return np.concatenate([raw[-1:], raw[:-1]]).view(data.dtype)

    # Chunk 0 is the send block, chunk 1 the receive block; device d's data is origin 2 d.
    def initial_content(self, s):
        return [{0: (2 * d, 1 << d)} for d in range(s.P)]

    def final_content(self, s):
        return [{1: (2 * ((d - 1) % s.P), 1 << ((d - 1) % s.P))} for d in range(s.P)]


register_collective(SendRecv())
