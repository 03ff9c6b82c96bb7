"""alltoall: device j's block i of the output is device i's block j of the input.

Input (P, P*m), output (P, P*m). The buffer holds the send blocks, then the receive blocks.
S = P x m x itemsize (what one device sends), busbw = algbw x (P-1)/P.
"""
from .collective import Collective
from .registry import register_collective


class AllToAll(Collective):
    name = "alltoall"
    perf_name = "alltoall_perf"
    per_device_blocks = True
    checks_in_place = False   # nccl-tests' AlltoAllInitData: reportErrors = in_place ? 0 : 1

    def count_from_shape(self, shape, P):
        if shape[1] % P:
            raise ValueError(f"alltoall input has {shape[1]} elements per device; expected a multiple "
                             f"of the device count P={P} (P blocks of m, one sent to each device)")
        return shape[1] // P

    def busbw_factor(self, P):
        return (P - 1) / P

    def buffer_length(self, P, count):
        return 2 * P * count

    def input_shape(self, P, count):
        return (P, P * count)

    def nbytes(self, P, count, itemsize):
        return P * count * itemsize

    def count_for_nbytes(self, nbytes, P, itemsize):
        return nbytes // (P * itemsize)

    def extract(self, buf, P, count, root, first=0):
        return buf[:, P * count:].copy()

    def reference(self, data, op, root):
        P = data.shape[0]
        m = data.shape[1] // P
        return data.reshape(P, P, m).transpose(1, 0, 2).reshape(P, P * m).copy()

    def initial_content(self, s):
        n = len(s.chunk_off)
        send = s.chunk_off < s.P * s.count
        return [{c: (d * n + c, 1 << d) for c in range(n) if send[c]} for d in range(s.P)]

    def final_content(self, s):
        # Receive slot i of device j at relative offset r holds what device i had in its send slot j at r.
        P, m, n = s.P, s.count, len(s.chunk_off)
        by_off = {int(o): c for c, o in enumerate(s.chunk_off) if s.chunk_len[c] > 0}
        out = [{} for _ in range(P)]
        for c in range(n):
            off = int(s.chunk_off[c])
            if off < P * m or s.chunk_len[c] == 0:
                continue
            i, r = divmod(off - P * m, m)
            for j in range(P):
                src_chunk = by_off.get(j * m + r)
                if src_chunk is None:
                    raise AssertionError(f"alltoall chunk layout: receive chunk {c} has no matching send chunk")
                out[j][c] = (i * n + src_chunk, 1 << i)
        return out


register_collective(AllToAll())
