"""What users run: the nccl-tests-style benchmark CLI, the scaling-loss study, the regression suite."""
