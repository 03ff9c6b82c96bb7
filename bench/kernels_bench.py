"""Data-plane speed, measured against numpy in the same run.

``python -m bench.kernels_bench`` prints:
- the Numba reduce-into (sum) throughput beside ``np.add(a, b, out=a)`` on the same 64 MiB float32
  arrays (GB/s counting two reads and one write, as docs/hardware.md does), and their ratio;
- the local executor's ring and direct allreduce for P = 8 devices x 16 MiB beside
  ``data.sum(axis=0)`` (which computes the same sum but moves no data between devices).
Medians of several repetitions, after a warm-up call that compiles the kernels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import collectives
from collectives import kernels


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.kernels_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="array size for reduce-into (MiB, default 64)")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args(argv)

    n = args.mib * 2**20 // 4
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    kernels.reduce_into(a[:1024], b[:1024])  # compile
    t_numba = median_time(lambda: kernels.reduce_into(a, b), args.repeat)
    t_numpy = median_time(lambda: np.add(a, b, out=a), args.repeat)
    moved = 3 * a.nbytes / 1e9
    print(f"reduce-into sum float32 {args.mib} MiB: numba {moved / t_numba:6.1f} GB/s, "
          f"np.add(out=) {moved / t_numpy:6.1f} GB/s, ratio numba/numpy {t_numpy / t_numba:.3f}")

    P, per_dev = 8, 16 * 2**20 // 4
    data = rng.integers(-3, 4, size=(P, per_dev)).astype(np.float32)
    for alg in ("ring", "direct"):
        collectives.run("allreduce", data[:, :64], alg)  # compile
        t_alg = median_time(lambda: collectives.run("allreduce", data, alg), max(3, args.repeat // 3))
        t_sum = median_time(lambda: data.sum(axis=0), max(3, args.repeat // 3))
        print(f"local executor allreduce {alg:6s} P={P} x 16 MiB: {t_alg * 1e3:7.1f} ms; "
              f"data.sum(axis=0) {t_sum * 1e3:6.1f} ms; ratio {t_alg / t_sum:.2f}")


if __name__ == "__main__":
    main()
