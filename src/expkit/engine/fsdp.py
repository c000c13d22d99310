"""Sharded training (``trainer.strategy=fsdp``) with FSDP2's ``fully_shard``.

``fully_shard`` changes the module in place: its parameters become DTensors, each rank
holding one shard. So sharding happens when the runtime sets up the task, before the task
builds its optimizer (which must see the sharded parameters), and a checkpoint is gathered:
``model`` is the plain module's full state dict (the keys of a 1-process run) and
``optimizer`` torch's own ``optimizer.state_dict()`` format (indexed parameters), so
checkpoints move freely between 1-process, DDP and FSDP runs. Gathering is a collective:
every rank calls these functions; only rank 0 gets the tensors (``cpu_offload``).
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import torch
from torch import nn

from expkit.engine import distributed as dist
from expkit.engine.checkpoint import unwrap_model
from expkit.errors import ConfigError


def check(model: nn.Module, device: torch.device) -> None:
    """Refuse what FSDP cannot shard, naming the key, the value and what works."""
    if device.type == "mps":
        raise ConfigError("trainer.accelerator='mps' with trainer.strategy=fsdp: MPS has no distributed backend; "
                          "use trainer.accelerator=cpu or cuda")
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"trainer.strategy=fsdp: the model ({type(model).__name__}) has no parameters to shard; "
                          "use trainer.strategy=auto or ddp")


def mixed_precision(precision: str) -> Any:
    """bf16-mixed: compute in bf16, reduce gradients in fp32 (the stored parameters stay fp32); 32: none."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision == "bf16-mixed":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if precision == "16-mixed":
        raise ConfigError("trainer.precision=16-mixed with trainer.strategy=fsdp: FSDP2 has no GradScaler support "
                          "here; use trainer.precision=bf16-mixed or 32")
    return MixedPrecisionPolicy()


def shard(model: nn.Module, precision: str, device: torch.device) -> None:
    """Shard ``model`` in place: one FSDP unit per block of each ``Sequential``/``ModuleList``
    (so only one block is gathered at a time), then the root for the rest (kept gathered from
    forward to backward, as FSDP2 does by default). Idempotent."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(model, FSDPModule):
        return
    check(model, device)
    policy = mixed_precision(precision)
    for container in [m for m in model.modules() if isinstance(m, (nn.Sequential, nn.ModuleList))]:
        for block in container.children():
            if not isinstance(block, FSDPModule) and any(True for _ in block.parameters()):
                fully_shard(block, mp_policy=policy, reshard_after_forward=True)
    fully_shard(model, mp_policy=policy, reshard_after_forward=False)


def is_sharded(model: nn.Module) -> bool:
    """Without ``shard`` having run, FSDP is not even imported (about 0.7 s): 1-process runs skip it."""
    module = sys.modules.get("torch.distributed.fsdp")
    return module is not None and isinstance(unwrap_model(model), module.FSDPModule)


def _full() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def model_state(model: nn.Module) -> dict[str, Any]:
    """The plain module's full state dict (collective when sharded; then empty off rank 0)."""
    plain = unwrap_model(model)
    if not is_sharded(plain):
        return plain.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(plain, options=_full())


def load_model_state(model: nn.Module, weights: dict[str, Any]) -> None:
    """Put full ``weights`` (every rank holds them: each loaded the file) into the plain or sharded model."""
    plain = unwrap_model(model)
    if not is_sharded(plain):
        plain.load_state_dict(weights)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(plain, weights, options=StateDictOptions(full_state_dict=True))


def _fqns(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each optimizer parameter, in the order ``optimizer.state_dict()`` numbers them."""
    names = {id(p): name for name, p in unwrap_model(model).named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()``; when sharded the gathered full state in that same indexed format
    (DCP keys it by parameter name; converted so 1-process runs read it). Empty off rank 0."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    named = get_optimizer_state_dict(unwrap_model(model), optimizer, options=_full())
    if not dist.is_rank_zero():
        return {}
    index = {fqn: i for i, fqn in enumerate(_fqns(model, optimizer))}
    return {"state": {index[fqn]: value for fqn, value in named["state"].items()},
            "param_groups": [{**g, "params": [index[f] for f in g["params"]]} for g in named["param_groups"]]}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Put an indexed ``optimizer.state_dict()`` (from any world size) back, sharding it when needed."""
    if not is_sharded(model):
        optimizer.load_state_dict(saved)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    fqns = _fqns(model, optimizer)
    named = {"state": {fqns[int(i)]: value for i, value in saved["state"].items()},
             "param_groups": [{**g, "params": [fqns[int(i)] for i in g["params"]]} for g in saved["param_groups"]]}
    set_optimizer_state_dict(unwrap_model(model), optimizer, named, options=StateDictOptions(full_state_dict=True))


def weights_to_check(model: nn.Module) -> list[torch.Tensor]:
    """What the non-finite check before a save looks at. Sharded: this rank's shards, with the
    verdict agreed over ranks (one bad shard refuses the save on every rank, none waits alone)."""
    plain = unwrap_model(model)
    if not is_sharded(plain):
        return list(plain.state_dict().values())
    from torch.distributed.tensor import DTensor

    local = [t.to_local() if isinstance(t, DTensor) else t for t in plain.state_dict().values()]
    bad = any(not bool(torch.isfinite(t).all()) for t in local if t.is_floating_point())
    return [torch.tensor(float("nan") if dist.all_reduce_max(float(bad)) else 0.0)]


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Evaluate with the full parameters gathered once on every rank: evaluation shards are not
    padded, so ranks may run different numbers of batches, and a sharded forward is a collective
    (the rank with more batches would wait forever). Costs the full model's memory meanwhile."""
    plain = unwrap_model(model)
    if not is_sharded(plain):
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in plain.modules() if isinstance(m, FSDPModule)]
    plain.set_reshard_after_forward(False)
    for unit in units:  # the same order on every rank
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        plain.set_reshard_after_forward(True)  # as ``shard`` set it: blocks reshard, the root does not
        plain.set_reshard_after_forward(False, recurse=False)


@contextlib.contextmanager
def no_sync(model: nn.Module) -> Iterator[None]:
    """Accumulate unreduced gradients (FSDP2's ``set_requires_gradient_sync``) for one micro-batch."""
    plain = unwrap_model(model)
    plain.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        plain.set_requires_gradient_sync(True)
