"""Sub-communicators stay emulated, each timed on the sub-system of its members' devices, and an
EmulatedComm is an Intracomm wherever mpi4py checks one.

Runs on any number of ranks (in-process on one, under ``mpiexec -n 2`` / ``-n 3``; a few cases at
``-n 4`` from tests/test_emulated_comm_local.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives.mpi import MPI, EmulatedComm
from topologies import preset
from topologies.whatif import select_devices

WORLD = MPI.COMM_WORLD


def devices_of(ranks, k):
    return [r * k + i for r in ranks for i in range(k)]


def world_ranks(comm):
    """The COMM_WORLD ranks of ``comm``'s members, in its rank order."""
    group, world = comm.Get_group(), WORLD.Get_group()
    try:
        return MPI.Group.Translate_ranks(group, list(range(group.Get_size())), world)
    finally:
        group.Free()
        world.Free()


def test_every_constructor_returns_an_emulated_intracomm():
    size, rank = WORLD.Get_size(), WORLD.Get_rank()
    root = EmulatedComm(WORLD)
    made = []
    try:
        world_group = WORLD.Get_group()
        evens = world_group.Incl(list(range(0, size, 2)))
        world_group.Free()
        made = [root.Dup(), root.Dup_with_info(MPI.INFO_NULL), root.Clone(), root.Idup()[0],
                root.Split(rank % 2, -rank), root.Split_type(MPI.COMM_TYPE_SHARED)]
        for comm in (root.Create(evens), root.Create_group(evens)):
            if rank % 2 == 0:
                made.append(comm)
            else:
                assert comm == MPI.COMM_NULL
        evens.Free()
        assert root.Split(MPI.UNDEFINED) == MPI.COMM_NULL
        for comm in made:
            assert type(comm) is EmulatedComm and isinstance(comm, MPI.Intracomm)
            ranks = world_ranks(comm)
            want = select_devices(root.topology, devices_of(ranks, 1))
            assert comm.topology.name == want.name and comm.num_devices == len(ranks)
            x = np.full(5, rank + 1, np.int64)
            comm.Allreduce(MPI.IN_PLACE, x)
            assert (x == sum(r + 1 for r in ranks)).all()
            assert comm.stats["Allreduce"].calls == 1 and comm.stats["Allreduce"].delegated == 0
        assert root.stats["Allreduce"].calls == 0          # each communicator has its own group and stats
        nested = made[4].Split(0, made[4].Get_rank())       # a split of a split keeps the devices
        assert type(nested) is EmulatedComm and nested.topology.name == made[4].topology.name
        made.append(nested)
    finally:
        for comm in made:
            comm.Free()
        root.close()


def _allreduce_time(comm, nbytes=1 << 18):
    x = np.ones(nbytes // 4, np.float32)
    comm.Allreduce(MPI.IN_PLACE, x)
    return comm.stats["Allreduce"]


def test_groups_are_timed_on_their_members_devices():
    """Each rank stands for one 8-GPU server of hgx-h20 x size: a group of ranks is timed on those
    servers' devices, joined by their NICs (alone, with concurrent_groups=False); with two ranks per
    server, a group inside one server sees its NVLink only."""
    size, rank = WORLD.Get_size(), WORLD.Get_rank()
    topo = preset("hgx-h20", nodes=size)
    emu = EmulatedComm(WORLD, topology=topo, devices_per_rank=8, concurrent_groups=False)
    dp = emu.Split(rank % 2)
    try:
        ranks = world_ranks(dp)
        want = select_devices(topo, devices_of(ranks, 8))
        assert dp.topology.name == want.name and dp.num_devices == 8 * len(ranks)
        kinds = {d["link"] for _, _, d in dp.topology.graph.edges(data=True)}
        assert "nvlink" in kinds and ("ib" in kinds or len(ranks) == 1)
        entry = _allreduce_time(dp)
        sim = collectives.simulate("allreduce", 1 << 18, want, algorithm="auto", dtype="float32")
        assert entry.emulated_s == sim.time_s and entry.nbytes == 1 << 18
        assert entry.algorithms == {sim.algorithm}
    finally:
        dp.Free()
        emu.close()
    if size % 2:
        return
    topo = preset("hgx-h20", nodes=size // 2)
    emu = EmulatedComm(WORLD, topology=topo, devices_per_rank=4, concurrent_groups=False)
    tp = emu.Split(rank // 2)                              # the two ranks of one server
    try:
        ranks = world_ranks(tp)
        assert ranks == [rank - rank % 2, rank - rank % 2 + 1]
        want = select_devices(topo, devices_of(ranks, 4))
        assert tp.topology.name == want.name
        sim = collectives.simulate("allreduce", 1 << 18, want, algorithm="auto", dtype="float32")
        assert _allreduce_time(tp).emulated_s == sim.time_s
    finally:
        tp.Free()
        emu.close()


def test_sibling_groups_are_timed_together():
    """By default a call on a Split's communicator is timed with the same call on its siblings of the
    same size at once (collectives.concurrent), as an SPMD program makes them; a Dup keeps them."""
    from collectives.concurrent import Call, simulate_concurrent

    size, rank = WORLD.Get_size(), WORLD.Get_rank()
    topo = preset("atlas800t-a2", nodes=size)
    emu = EmulatedComm(WORLD, topology=topo, devices_per_rank=8)
    made = [emu.Split(rank % 2)]
    made.append(made[0].Dup())
    try:
        mine = world_ranks(made[0])
        groups = [[r for r in range(size) if r % 2 == c] for c in (0, 1)]
        same = [devices_of(g, 8) for g in groups if len(g) == len(mine)]
        for comm in made:
            entry = _allreduce_time(comm)
            if len(same) > 1:
                res = simulate_concurrent(topo, [Call("allreduce", 1 << 18, tuple(d)) for d in same])
                want = res.calls[same.index(devices_of(mine, 8))].time_s
                algorithm = next(iter(entry.algorithms))
                assert entry.timed_as == {f"allreduce/{algorithm} ({len(same)} groups at once)"}
            else:   # no sibling of its size: alone on its sub-system
                want = collectives.simulate("allreduce", 1 << 18, select_devices(topo, devices_of(mine, 8))).time_s
            assert entry.emulated_s == pytest.approx(want, rel=1e-12)
        assert "Split" in emu.report(file=None) and "timed together" in emu.report(file=None)
    finally:
        for comm in made:
            comm.Free()
        emu.close()


def test_mpi4py_takes_it_as_a_communicator():
    """A subclass sharing the handle: MPI calls that need a real communicator take it, and the calls it
    does not emulate are mpi4py's own."""
    size, rank = WORLD.Get_size(), WORLD.Get_rank()
    emu = EmulatedComm(WORLD)
    try:
        assert MPI.Comm.Compare(emu, WORLD) == MPI.IDENT and emu.Get_rank() == rank and emu.size == size
        win = MPI.Win.Create(np.zeros(4, np.float64), comm=emu)
        win.Free()
        if size > 1:   # point-to-point on the same handle
            if rank == 0:
                emu.send("hello", dest=1, tag=7)
            elif rank == 1:
                assert emu.recv(source=0, tag=7) == "hello"
        from mpi4py.util import pkl5

        assert pkl5.Intracomm(emu).allgather(rank) == list(range(size))
        assert emu.Get_topology() == MPI.UNDEFINED and emu.Is_intra()
    finally:
        emu.close()


def test_bad_devices_per_rank_for_the_topology():
    with pytest.raises(ValueError, match=r"has 8 devices; expected \d+ ranks x 3 devices per rank"):
        EmulatedComm(WORLD, topology=preset("hgx-h20"), devices_per_rank=3)
