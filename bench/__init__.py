"""What users run: the nccl-tests-style benchmark CLI, the scaling-loss study, the regression suite."""

from collectives import __version__ as VERSION  # noqa: F401  (one version, the package's)
