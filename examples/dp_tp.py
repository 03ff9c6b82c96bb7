"""Data x tensor parallelism with mpi4py: TP groups inside nodes, DP groups across nodes, emulated by ccemu.

    mpiexec -n 4 python examples/dp_tp.py            # atlas800t-a2 x2, then hgx-h20 x2
    mpiexec -n 4 python examples/dp_tp.py --native   # the same loop on MPI.COMM_WORLD

Every rank stands for ``devices_per_rank`` accelerators of a two-node system (16 devices: with 4 ranks,
4 each), so the ranks of one node form a tensor-parallel group and the ranks at the same place in
each node a data-parallel group. A two-layer MLP is split Megatron-style inside the TP group (first
layer by columns, second by rows: one ``Allreduce`` of the partial outputs per step) and its
gradients are averaged over the DP group (``Allreduce``). The program is plain mpi4py; the only
ccemu line is the one that makes ``world``, and ``Split`` returns emulated communicators whose calls
are timed on their own devices: the TP group's on one node's links, the DP group's over the NICs,
each together with its sibling groups' same call (all TP groups reduce at once, and so do all DP
groups). At the end each system's report shows the emulated time per group.
"""

import argparse

import numpy as np
from mpi4py import MPI

from collectives.mpi import EmulatedComm
from topologies import preset

SYSTEMS = ("atlas800t-a2", "hgx-h20")
NODES = 2

ap = argparse.ArgumentParser()
ap.add_argument("--native", action="store_true", help="use MPI.COMM_WORLD itself")
ap.add_argument("--topology", action="append", choices=SYSTEMS, help="one system (default: both)")
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--hidden", type=int, default=4096, help="MLP hidden width (split over the TP group)")
ap.add_argument("--lr", type=float, default=0.0005)
args = ap.parse_args()


def train(world, steps: int) -> tuple[float, object, object]:
    """The DP x TP loop on ``world``; the final mean loss and the two groups."""
    rank, size = world.Get_rank(), world.Get_size()
    per_node = size // NODES
    tp = world.Split(rank // per_node, rank)   # the ranks of one node
    dp = world.Split(rank % per_node, rank)    # the same TP position in every node
    tp.Set_name(f"TP{rank // per_node}")
    dp.Set_name(f"DP{rank % per_node}")
    d_in, d_out, batch = 512, 256, 64
    h = args.hidden // tp.Get_size()           # this rank's shard of the hidden layer
    rng = np.random.default_rng(1234)          # the same full model everywhere, then this rank's shard
    w1 = (rng.standard_normal((d_in, args.hidden)) / np.sqrt(d_in)).astype(np.float32)
    w2 = (rng.standard_normal((args.hidden, d_out)) / np.sqrt(args.hidden)).astype(np.float32)
    lo = tp.Get_rank() * h
    w1, w2 = w1[:, lo:lo + h].copy(), w2[lo:lo + h].copy()
    data = np.random.default_rng(dp.Get_rank() + 1)  # TP ranks of a replica see the same batch
    target = (np.random.default_rng(99).standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)
    y = np.empty((batch, d_out), np.float32)
    g1, g2 = np.empty_like(w1), np.empty_like(w2)
    for _ in range(steps):
        x = data.standard_normal((batch, d_in)).astype(np.float32)
        want = x @ target
        a = np.maximum(x @ w1, 0)                          # column-parallel layer: no communication
        tp.Allreduce(a @ w2, y, op=MPI.SUM)                # row-parallel layer: sum the partial outputs
        gy = np.float32(2.0 / batch) * (y - want)
        ga = (gy @ w2.T) * (a > 0)
        dp.Allreduce(x.T @ ga, g1, op=MPI.SUM)             # average the gradients over the replicas
        dp.Allreduce(a.T @ gy, g2, op=MPI.SUM)
        w1 -= np.float32(args.lr / dp.Get_size()) * g1
        w2 -= np.float32(args.lr / dp.Get_size()) * g2
    x = data.standard_normal((batch, d_in)).astype(np.float32)
    tp.Allreduce(np.maximum(x @ w1, 0) @ w2, y, op=MPI.SUM)
    loss = float(np.mean((y - x @ target) ** 2))
    return float(np.mean(world.allgather(loss))), tp, dp


world = MPI.COMM_WORLD
size = world.Get_size()
if (NODES * 8) % size or size % NODES:
    if world.Get_rank() == 0:
        print(f"dp_tp.py: {size} ranks; expected a multiple of {NODES} that divides {NODES * 8} (the devices)")
    raise SystemExit(2)

if args.native:
    loss, tp, dp = train(world, args.steps)
    if world.Get_rank() == 0:
        print(f"native: ranks {size} (TP {tp.Get_size()} x DP {dp.Get_size()}), steps {args.steps}, "
              f"mean loss {loss:.6e}")
else:
    for name in args.topology or SYSTEMS:
        system = preset(name, nodes=NODES)
        comm = EmulatedComm(world, topology=system,                      # the one-line switch
                            devices_per_rank=system.num_devices // size)
        loss, tp, dp = train(comm, args.steps)
        if comm.Get_rank() == 0:
            print(f"{name} x{NODES}: ranks {size} (TP {tp.Get_size()} x DP {dp.Get_size()}), steps {args.steps}, "
                  f"mean loss {loss:.6e}")
            for group in (tp, dp):
                s = group.stats["Allreduce"]
                print(f"  {group.Get_name()}: {group.num_devices} devices on {group.topology.name}: {s.calls} "
                      f"Allreduce, {s.emulated_s * 1e3:.3f} emulated ms ({s.emulated_s / s.calls * 1e6:.1f} us each, "
                      f"{','.join(sorted(s.timed_as))})")
        comm.report()
        tp.Free()
        dp.Free()
        comm.close()
