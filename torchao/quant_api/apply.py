"""quantize_ / quantize: swap the weights of selected modules for quantized tensors, all or nothing."""

from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from torchao.kernels.inductor_config import recommended_inductor_config_setter
from torchao.quant_api.configs import UnsupportedWeight
from torchao.quant_api.fqn_config import FqnToConfig
from torchao.quant_api.transformers_link import is_transformers_model, mark_transformers_model

__all__ = ["quantize_", "quantize", "default_filter_fn", "NonFiniteWeight", "check_finite", "warn_lost_weights"]

ApplyFn = Callable[[torch.Tensor], torch.Tensor]
FilterFn = Callable[[nn.Module, str], bool]


def default_filter_fn(module: nn.Module, fqn: str) -> bool:
    """Every nn.Linear."""
    return isinstance(module, nn.Linear)


def _targets(model: nn.Module, filter_fn: FilterFn) -> List[Tuple[str, nn.Module]]:
    return [
        (fqn, m) for fqn, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and filter_fn(m, fqn)
    ]


class NonFiniteWeight(ValueError):
    """A selected layer's weight holds inf or NaN, which no integer format can represent."""


def check_finite(fqn: str, weight: torch.Tensor) -> None:
    """Raise NonFiniteWeight naming the layer when ``weight`` has an inf or a NaN."""
    if weight.is_floating_point() and not bool(torch.isfinite(weight).all()):
        bad = int((~torch.isfinite(weight)).sum())
        raise NonFiniteWeight(f"{fqn}.weight {tuple(weight.shape)} has {bad} inf/NaN value(s); quantization "
                              "cannot represent them: fix the weights or leave this layer out with filter_fn")


#: a layer whose dequantized weight is farther than this from the float weight (relative L2) lost most of it
LOST_WEIGHT_ERROR = 0.5


def warn_lost_weights(pairs) -> None:
    """One warning naming every (fqn, float weight, quantized weight) whose relative L2 error exceeds
    LOST_WEIGHT_ERROR (e.g. weights far below the format's resolution)."""
    lost = []
    for fqn, weight, quantized in pairs:
        weight, quantized = _local(weight), _local(quantized)  # tensor parallelism: this rank's shards
        if not hasattr(quantized, "dequantize") or quantized.device.type == "meta" or \
                type(quantized).dequantize is torch.Tensor.dequantize:
            continue
        reference = weight.detach().to(quantized.device, torch.float32)
        norm = reference.norm()
        if norm > 0:
            error = (quantized.dequantize(torch.float32) - reference).norm() / norm
            if error > LOST_WEIGHT_ERROR:
                lost.append(f"  {fqn}: relative error {error:.2f} (weight norm {norm:.3g})")
    if lost:
        warnings.warn(f"quantization lost most of {len(lost)} weight(s):\n" + "\n".join(lost), stacklevel=4)


def _warn_skipped(skipped: Dict[str, str]) -> None:
    lines = "\n".join(f"  {fqn}: {reason}" for fqn, reason in skipped.items())
    warnings.warn(f"quantize_ left {len(skipped)} layer(s) unchanged:\n{lines}", stacklevel=4)


def quantize_(
    model: nn.Module,
    apply_fn_or_config: ApplyFn,
    filter_fn: Optional[FilterFn] = None,
    set_inductor_config: bool = True,
    device: Optional[Union[str, torch.device]] = None,
    *,
    strict: bool = False,
) -> None:
    """Quantize the weights of ``model`` in place.

    Args:
        model: any nn.Module.
        apply_fn_or_config: a config (e.g. ``int4_weight_only(group_size=128)``), an ``FqnToConfig`` (a
            config per module name / pattern), or any function that maps a float weight to a quantized
            tensor of the same shape.
        filter_fn: ``filter_fn(module, fully_qualified_name) -> bool`` selects modules (default: nn.Linear).
        set_inductor_config: apply the Inductor settings the quantized kernels want
            (``torchao.kernels.inductor_config``); False leaves the global config alone.
        device: move each selected module there and quantize its weight there (e.g. quantize on GPU,
            keep on GPU); None: where it is.
        strict: raise, before changing anything, if a selected layer cannot be served (otherwise it stays
            in float and is listed in a warning).

    All new weights are computed before any is swapped in, so an error leaves the model as it was.
    Weights shared between modules (tied) are quantized once and stay shared. On a transformers model the
    quantization is also recorded in ``model.config`` (``TorchAoConfig``), so ``save_pretrained`` writes a
    directory that ``from_pretrained`` loads.
    """
    if set_inductor_config:
        recommended_inductor_config_setter()
    device = None if device is None else torch.device(device)
    per_module = isinstance(apply_fn_or_config, FqnToConfig)
    if per_module:  # each module its own config; filter_fn (if given) narrows the selection further
        chosen = {fqn: apply_fn_or_config.config_for(m, fqn) for fqn, m in model.named_modules()}
        selected = {fqn: c for fqn, c in chosen.items() if c is not None}
        user_filter = filter_fn
        filter_fn = (lambda m, fqn: fqn in selected and (user_filter is None or user_filter(m, fqn)))
    filter_fn = filter_fn or default_filter_fn
    targets = dict(_targets(model, filter_fn))
    for fqn, module in targets.items():
        check_finite(fqn, module.weight)
    config_of = (lambda fqn: selected[fqn]) if per_module else (lambda fqn: apply_fn_or_config)
    calibrated = hasattr(apply_fn_or_config, "quantized_weights")
    if calibrated:  # GPTQ, AutoRound: the method picks its layers (e.g. those inside the blocks)
        targets = apply_fn_or_config.layers_to_quantize(model, targets)
        reasons = apply_fn_or_config.unsupported_layers(targets)
    else:
        reasons = {fqn: r for fqn, m in targets.items()
                   if (precheck := getattr(config_of(fqn), "unsupported_reason", None)) and (r := precheck(m.weight))}
    skipped = {**reasons, **_shared_with_unselected(model, targets)}
    _refuse_if_strict(skipped, strict)
    todo = {fqn: m for fqn, m in targets.items() if fqn not in skipped}
    if calibrated:
        new_weights = apply_fn_or_config.quantized_weights(model, todo)
    else:
        new_weights = _quantize_each(todo, config_of, skipped, strict, device)
    _commit(model, targets, new_weights, skipped, device)
    if new_weights and is_transformers_model(model):  # so that save_pretrained writes a loadable checkpoint
        mark_transformers_model(model)


def _refuse_if_strict(skipped: Dict[str, str], strict: bool) -> None:
    if strict and skipped:
        raise UnsupportedWeight(
            "quantize_(strict=True): cannot serve " + "; ".join(f"{fqn}: {r}" for fqn, r in skipped.items())
        )


def _quantize_each(targets: Dict[str, nn.Module], config_of: Callable[[str], ApplyFn], skipped: Dict[str, str],
                   strict: bool, device: Optional[torch.device]) -> Dict[str, nn.Parameter]:
    """Each target's apply function (``config_of(fqn)``) on its weight, once per shared weight; a weight
    the function refuses (UnsupportedWeight) joins ``skipped``, or is raised under ``strict``."""
    new_weights: Dict[str, nn.Parameter] = {}
    by_identity: Dict[int, nn.Parameter] = {}
    with torch.no_grad():
        for fqn, module in targets.items():
            weight = module.weight
            if id(weight) not in by_identity:
                try:
                    quantized = _quantize_shard(config_of(fqn), weight if device is None else weight.to(device))
                except UnsupportedWeight as e:
                    if strict:
                        raise
                    skipped[fqn] = str(e)
                    continue
                except Exception as e:
                    if hasattr(e, "add_note"):  # Python 3.11+: say which layer, keep the exception's type
                        e.add_note(f"while quantizing {fqn}.weight of shape {tuple(weight.shape)} ({weight.dtype})")
                    raise
                by_identity[id(weight)] = nn.Parameter(quantized, requires_grad=False)
            new_weights[fqn] = by_identity[id(weight)]
    return new_weights


def _quantize_shard(apply_fn: ApplyFn, weight: torch.Tensor) -> torch.Tensor:
    """``apply_fn(weight)``; for a DTensor weight (tensor parallelism), this rank's shard quantized and put
    back in a DTensor of the same mesh, placements and global shape."""
    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(weight, dtensor):
        return apply_fn(weight)
    local = apply_fn(weight.to_local())
    return dtensor.from_local(local, weight.device_mesh, weight.placements, run_check=False, shape=weight.shape,
                              stride=weight.stride())


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard, any other tensor itself."""
    dtensor = _dtensor_type()
    return t.to_local() if dtensor is not None and isinstance(t, dtensor) else t


def _dtensor_type():
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def _commit(model: nn.Module, targets: Dict[str, nn.Module], new_weights: Dict[str, torch.Tensor],
            skipped: Dict[str, str], device: Optional[torch.device] = None) -> None:
    """The one swap every path ends in: check each new weight, warn about lost ones, put them all in
    place (frozen Parameters; their modules moved to ``device`` if given), then list the layers left
    unchanged."""
    for fqn, weight in new_weights.items():
        _check_result(fqn, targets[fqn].weight, weight)
    warn_lost_weights([(fqn, targets[fqn].weight, w) for fqn, w in new_weights.items()])
    moved: Dict[int, nn.Parameter] = {}
    for fqn, weight in new_weights.items():
        if device is not None:
            targets[fqn].to(device)
            if weight.device != device:
                weight = moved.setdefault(id(weight), nn.Parameter(weight.detach().to(device), requires_grad=False))
        param = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=False)
        targets[fqn].weight = param
    if skipped:
        _warn_skipped(skipped)


def _shared_with_unselected(model: nn.Module, targets) -> Dict[str, str]:
    """Targets whose weight is also held by a module that is not being quantized (e.g. an embedding tied to
    an lm_head when only Linear layers are selected): those stay in float, so the tie and the other
    module's float math both survive."""
    selected = set(targets)
    holders: Dict[int, List[str]] = {}
    for fqn, module in model.named_modules(remove_duplicate=False):
        for name, param in module.named_parameters(recurse=False):
            holders.setdefault(id(param), []).append(f"{fqn}.{name}" if fqn else name)
    reasons = {}
    for fqn, module in targets.items():
        others = [h for h in holders.get(id(module.weight), []) if h.rpartition(".")[0] not in selected]
        if others:
            reasons[fqn] = f"weight shared with {', '.join(others)}, which is not being quantized"
    return reasons


def _check_result(fqn: str, weight: torch.Tensor, quantized) -> None:
    if not isinstance(quantized, torch.Tensor):
        raise TypeError(f"the apply function returned {type(quantized).__name__} for {fqn}.weight, not a tensor")
    if tuple(quantized.shape) != tuple(weight.shape):
        raise ValueError(
            f"the apply function changed the shape of {fqn}.weight from {tuple(weight.shape)} to {tuple(quantized.shape)}"
        )


def quantize(model: nn.Module, apply_fn: ApplyFn, filter_fn: Optional[FilterFn] = None, **kwargs) -> nn.Module:
    """``quantize_`` that returns the model (the seed README's form)."""
    quantize_(model, apply_fn, filter_fn, **kwargs)
    return model
