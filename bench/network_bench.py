"""Time-plane speed: wall time and flows per second of the network model on large systems.

``python -m bench.network_bench`` times ``collectives.simulate`` for
- ring allreduce on 1024 devices (128 nodes of 8 on a non-blocking intra-node switch, nodes joined
  by a two-tier fat tree) and on 16384 devices (2048 nodes of 8);
- pairwise all-to-all on 1024 devices.
"Flows" counts every transfer of every step (what an unrolled flow simulation would process).
Building the topology is timed separately; the second call shows a size sweep's reuse of routes.
"""

from __future__ import annotations

import argparse
import time

import collectives
from topologies import two_level


def cluster(nodes):
    # Numbers as an HGX H100-class cluster: 450 GB/s NVSwitch per GPU, 400G NICs (50 GB/s).
    return two_level(nodes, 8, intra="switch", intra_bw_GBps=450.0, intra_lat_us=0.5, nic_bw_GBps=50.0,
                     nic_lat_us=1.0, fabric="fat-tree", leaf_ports=32)


def flows(P, coll):
    if coll == "allreduce":
        return 2 * (P - 1) * P
    return (P - 1) * P


def run_case(coll, alg, nodes, nbytes):
    t0 = time.perf_counter()
    topo = cluster(nodes)
    t_build = time.perf_counter() - t0
    P = topo.num_devices
    t0 = time.perf_counter()
    r = collectives.simulate(coll, nbytes, topo, algorithm=alg)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    collectives.simulate(coll, nbytes * 2, topo, algorithm=alg)
    t_again = time.perf_counter() - t0
    n = flows(P, coll)
    print(f"{coll:9s} {alg:8s} P={P:6d}: build {t_build:6.2f} s, simulate {t_first:6.2f} s "
          f"({n / t_first:,.0f} flows/s), next size {t_again:6.2f} s; emulated {r.time_s * 1e3:9.3f} ms, "
          f"busbw {r.busbw_GBps:6.1f} GB/s")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.network_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--skip-16k", action="store_true", help="leave out the 16384-device case")
    args = ap.parse_args(argv)
    run_case("allreduce", "ring", 2, 2**20)  # compile the jitted model once, outside the timings
    run_case("allreduce", "ring", 128, 1 << 30)
    if not args.skip_16k:
        run_case("allreduce", "ring", 2048, 1 << 34)
    run_case("alltoall", "pairwise", 128, 1 << 30)


if __name__ == "__main__":
    main()
