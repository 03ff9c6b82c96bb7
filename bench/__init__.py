"""What users run: the nccl-tests-style benchmark CLI, the scaling-loss study, the regression suite."""

from collectives import __version__ as VERSION  # noqa: F401  (one version, the package's)


def add_routing_argument(parser) -> None:
    """``--routing``, as every command that loads a system takes it (:func:`topologies.whatif.set_routing`)."""
    parser.add_argument("--routing", default=None, choices=("ecmp", "adaptive", "default"),
                        help="how the scale-out fabric's switches spread flows over equal-cost paths: ecmp (each flow "
                             "hashed onto one), adaptive (split by bandwidth); default: ecmp on RoCE/TCP, adaptive on "
                             "InfiniBand/EFA")
