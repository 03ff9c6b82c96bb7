"""How a workload is parallelised: data (plain, ZeRO, FSDP), tensor, pipeline, expert and context
parallelism, and the micro-batches of one step.

The device count is ``tp x cp x dp x pp``; expert parallelism is carved out of the data-parallel
dimension (``ep`` divides ``dp``), as Megatron-LM's MoE layers do, and each expert's FFN is split
over the tensor-parallel group as the dense FFN is (expert tensor parallelism = ``tp``). ``dp``
left out is the rest of the devices. ``zero``: 0 is plain data parallelism (gradients
allreduced), 1 and 2 the distributed optimizer (gradients reduce-scattered, parameters allgathered
after the update), 3 is ZeRO-3 / FSDP (parameters allgathered per layer in the forward and
backward passes, gradients reduce-scattered per layer). ``sequence_parallel`` (default: on when
``tp > 1``) replaces each tensor-parallel allreduce by a reduce-scatter and an allgather of the same
size (Megatron's sequence parallelism); an MoE with ``tp > 1`` needs it, as Megatron-LM requires.

>>> from workloads.model import builtin_model
>>> Parallelism(tp=8, pp=4).resolve(builtin_model("llama3-70b"), 64).dp
2
>>> Parallelism(tp=3).resolve(builtin_model("llama3-70b"), 24)
Traceback (most recent call last):
...
ValueError: tp=3 does not divide heads=64 of llama3-70b; expected a divisor of 64
>>> Parallelism(tp=8, pp=4).resolve(builtin_model("llama3-70b"), 100)
Traceback (most recent call last):
...
ValueError: devices=100 is not divisible by tp*cp*pp=32 (tp=8, cp=1, pp=4); expected a multiple of 32
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace

from collectives import dtypes

MODES = ("train", "prefill", "decode")


@dataclass(frozen=True)
class Parallelism:
    """Degrees of parallelism (see the module docstring)."""

    tp: int = 1
    pp: int = 1
    dp: int | None = None
    ep: int = 1
    cp: int = 1
    zero: int = 1
    micro_batches: int = 1
    sequence_parallel: bool | None = None
    grad_dtype: str | None = None

    def __post_init__(self):
        for f in ("tp", "pp", "ep", "cp", "micro_batches"):
            _check_int(f, getattr(self, f), 1)
        if self.dp is not None:
            _check_int("dp", self.dp, 1)
        if isinstance(self.zero, bool) or self.zero not in (0, 1, 2, 3):
            raise ValueError(f"zero={self.zero!r}; expected 0 (plain data parallel), 1, 2 (distributed optimizer) "
                             f"or 3 (ZeRO-3 / FSDP)")
        if self.sequence_parallel is not None and not isinstance(self.sequence_parallel, bool):
            raise ValueError(f"sequence_parallel={self.sequence_parallel!r}; expected true or false")
        if self.grad_dtype is not None:
            dtypes.canonical(self.grad_dtype)

    @property
    def sp(self) -> bool:
        """Whether sequence parallelism is on."""
        return self.tp > 1 if self.sequence_parallel is None else (self.sequence_parallel and self.tp > 1)

    @property
    def devices(self) -> int:
        return self.tp * self.cp * (self.dp or 1) * self.pp

    def resolve(self, model, devices: int, mode: str = "train") -> "Parallelism":
        """The parallelism for ``devices`` devices (``dp`` filled in), checked against ``model``:
        one-line ``ValueError`` naming the first value that does not fit."""
        if isinstance(devices, bool) or not isinstance(devices, numbers.Integral) or devices < 1:
            raise ValueError(f"devices={devices!r}; expected an integer >= 1")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; expected one of {', '.join(MODES)}")
        tp, cp, pp, ep = self.tp, self.cp, self.pp, self.ep
        if model.heads % tp:
            raise ValueError(f"tp={tp} does not divide heads={model.heads} of {model.name}; "
                             f"expected a divisor of {model.heads}")
        kv = model.kv_heads_
        if model.attention == "gqa" and kv % tp and tp % kv:
            raise ValueError(f"tp={tp} and kv_heads={kv} of {model.name}: expected one to divide the other "
                             f"(key-value heads are split or replicated over the tensor-parallel group)")
        if model.ffn and (not model.moe or model.dense_layers) and model.ffn % tp:
            raise ValueError(f"tp={tp} does not divide ffn={model.ffn} of {model.name}; expected a divisor")
        if model.moe and model.moe_ffn % tp:
            raise ValueError(f"tp={tp} does not divide moe_ffn={model.moe_ffn} of {model.name}; expected a divisor")
        base = tp * cp * pp
        if devices % base:
            raise ValueError(f"devices={devices} is not divisible by tp*cp*pp={base} (tp={tp}, cp={cp}, pp={pp}); "
                             f"expected a multiple of {base}")
        dp = devices // base
        if self.dp is not None and self.dp != dp:
            raise ValueError(f"dp={self.dp}: tp*cp*dp*pp = {base * self.dp}, but the system has {devices} devices; "
                             f"expected dp={dp} (or leave dp out)")
        if pp > model.layers:
            raise ValueError(f"pp={pp} is more than the {model.layers} layers of {model.name}; expected at most "
                             f"{model.layers}")
        if ep > 1:
            if not model.moe:
                raise ValueError(f"ep={ep} needs a mixture-of-experts model; {model.name} is dense (expected ep=1)")
            if dp % ep:
                raise ValueError(f"ep={ep} does not divide dp={dp} (expert parallelism is carved out of data "
                                 f"parallelism); expected a divisor of {dp}")
            if model.experts % ep:
                raise ValueError(f"ep={ep} does not divide experts={model.experts} of {model.name}; "
                                 f"expected a divisor of {model.experts}")
        sp = tp > 1 if self.sequence_parallel is None else bool(self.sequence_parallel)
        if model.moe and tp > 1 and not sp:
            raise ValueError(f"tp={tp} with the MoE {model.name} needs sequence_parallel (Megatron-LM requires it); "
                             f"expected sequence_parallel=true or tp=1")
        seq = 1 if mode == "decode" else model.seq_len
        if mode == "decode" and cp > 1:
            raise ValueError(f"cp={cp} in decode mode: a decoding step has one token per sequence; expected cp=1")
        if seq % cp:
            raise ValueError(f"cp={cp} does not divide seq_len={model.seq_len}; expected a divisor")
        tokens = model.micro_batch * seq // cp
        if sp and tp > 1 and tokens % tp:
            raise ValueError(f"sequence parallelism splits the micro-batch's {tokens} tokens over tp={tp}; "
                             f"expected micro_batch*seq_len/cp to be a multiple of tp")
        if mode != "train" and self.zero == 3:
            raise ValueError(f"zero=3 in {mode} mode: FSDP shards training state; expected zero 0, 1 or 2")
        return replace(self, dp=dp)

    def as_dict(self) -> dict:
        """The fields as given (``sequence_parallel`` None: on when ``tp > 1``; :attr:`sp` says)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


FIELDS = tuple(f.name for f in fields(Parallelism))


def parallel_from_dict(doc) -> Parallelism:
    if not isinstance(doc, dict):
        raise ValueError(f"parallel must be a mapping of {', '.join(FIELDS)}; got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise ValueError(f"parallel: unknown key {unknown[0]!r}; expected one of {', '.join(FIELDS)}")
    return Parallelism(**doc)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r}; expected an integer >= {low}")
