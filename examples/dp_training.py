"""A plain mpi4py data-parallel training loop, with its gradient allreduce emulated by ccemu.

    mpiexec -n 2 python examples/dp_training.py            # emulated on atlas800t-a2
    mpiexec -n 2 python examples/dp_training.py --native   # the same loop on MPI.COMM_WORLD

Each rank fits a linear model on its own shard of synthetic data and averages gradients with
``comm.Allreduce`` every step. The only ccemu line is the one that makes ``comm``; at the end,
``comm.report()`` prints how long the communication would have taken on the emulated system.
"""

import argparse

import numpy as np
from mpi4py import MPI

from collectives.mpi import EmulatedComm
from topologies import preset

ap = argparse.ArgumentParser()
ap.add_argument("--native", action="store_true", help="use MPI.COMM_WORLD itself")
ap.add_argument("--topology", default="atlas800t-a2")
ap.add_argument("--steps", type=int, default=50)
args = ap.parse_args()

world = MPI.COMM_WORLD
topo = preset(args.topology)
comm = world if args.native else EmulatedComm(world, topology=topo,  # the one-line switch
                                               devices_per_rank=topo.num_devices // world.size)

rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(rank)
true_w = np.arange(1, 1025, dtype=np.float32) / 1024
x = rng.standard_normal((256, 1024)).astype(np.float32)
y = x @ true_w
w = np.zeros(1024, np.float32)
grad_sum = np.empty_like(w)
for step in range(args.steps):
    grad = (2.0 / len(x)) * (x.T @ (x @ w - y))
    comm.Allreduce(grad, grad_sum, op=MPI.SUM)
    w -= 0.05 * grad_sum / size
loss = float(np.mean((x @ w - y) ** 2))
losses = comm.gather(loss, root=0)
if rank == 0:
    print(f"ranks {size}, steps {args.steps}, mean loss {np.mean(losses):.3e}")
if not args.native:
    comm.report()
