"""The compressed-tensors checkpoint layout (what vLLM's and transformers' compressed-tensors paths load).

Per quantized Linear ``<m>`` (weight (N, K), b bits, groups of G along K or one per row):

* ``pack-quantized`` (weight-only, any b in 1..8; also with int8 activations): ``<m>.weight_packed`` int32
  (N, ceil(K*b/32)), the codes q + 2^(b-1) of the signed values q packed densely along K (int32_packing);
  ``<m>.weight_scale`` (N, K/G) in the model's dtype; ``<m>.weight_zero_point`` (asymmetric only) int32
  (ceil(N*b/32), K/G), the signed zero points the same way, packed along N; ``<m>.weight_shape`` [N, K];
* ``int-quantized`` (8-bit weights with int8 dynamic activations): ``<m>.weight`` int8, ``weight_scale``,
  ``weight_zero_point`` int8 (asymmetric only).

The value is (q - zero_point) * scale. ``config.json`` gets the ``quantization_config`` (one config group
targeting ``Linear``, float Linear layers listed in ``ignore``, ``input_activations`` for dynamic int8
activations per token). Mapping rules: integer zero points (or symmetric weights), one scheme for the
whole model, nn.Linear only; refused otherwise, naming the layer.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn

from torchao.io.flat_state_dict import CheckpointError
from torchao.io.int32_packing import pack_int32, unpack_int32
from torchao.io.integer_codes import (
    IntegerScheme,
    integer_codes,
    quantized_linears,
    scheme_of_model,
    weight_from_codes,
)

__all__ = ["save_compressed_tensors", "load_compressed_tensors", "is_compressed_tensors_config"]

NAME = "compressed_tensors"
BITS = tuple(range(1, 9))
#: our activation quantizers -> compressed-tensors' input_activations
ACTIVATIONS = {
    None: None,
    "int8_per_token_sym": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
    "int8_per_token_asym": {"num_bits": 8, "type": "int", "symmetric": False, "strategy": "token", "dynamic": True},
}
_PARAMS = ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx")


def _format_of(scheme: IntegerScheme) -> str:
    return "int-quantized" if scheme.act_quant is not None and scheme.bits == 8 else "pack-quantized"


def _quantization_config(scheme: IntegerScheme, ignore) -> dict:
    weights = {"num_bits": scheme.bits, "type": "int", "symmetric": scheme.sym, "dynamic": False,
               "strategy": "channel" if scheme.group_size == -1 else "group",
               "group_size": None if scheme.group_size == -1 else scheme.group_size}
    group = {"targets": ["Linear"], "weights": weights, "input_activations": ACTIVATIONS[scheme.act_quant],
             "output_activations": None, "format": None}
    return {"quant_method": "compressed-tensors", "format": _format_of(scheme), "quantization_status": "compressed",
            "config_groups": {"group_0": group}, "ignore": sorted(ignore), "kv_cache_scheme": None}


def save_compressed_tensors(model: nn.Module, directory: Path) -> None:
    """Write ``model`` as model.safetensors + config.json in the layout (see the module docstring)."""
    from safetensors.torch import save_file

    scheme = scheme_of_model(model, NAME, BITS, tuple(ACTIVATIONS))
    fmt = _format_of(scheme)
    quantized = quantized_linears(model)
    out: Dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        fqn, _, attr = name.rpartition(".")
        if not (fqn in quantized and attr == "weight"):
            out[name] = value.detach().cpu().contiguous()
            continue
        w = integer_codes(fqn, value, NAME, BITS, tuple(ACTIVATIONS))
        middle = 2 ** (w.scheme.bits - 1)
        if fmt == "int-quantized":
            out[f"{fqn}.weight"] = (w.codes - middle).to(torch.int8).cpu()
            if not w.scheme.sym:
                out[f"{fqn}.weight_zero_point"] = (w.zeros - middle).to(torch.int8).cpu()
        else:
            out[f"{fqn}.weight_packed"] = pack_int32(w.codes, w.scheme.bits, dim=1).cpu()
            out[f"{fqn}.weight_shape"] = torch.tensor(list(value.shape), dtype=torch.int64)
            if not w.scheme.sym:
                out[f"{fqn}.weight_zero_point"] = pack_int32(w.zeros, w.scheme.bits, dim=0).cpu()
        out[f"{fqn}.weight_scale"] = w.scale.to(value.dtype).contiguous().cpu()
    save_file(out, str(directory / "model.safetensors"), metadata={"format": "pt"})
    ignore = [fqn for fqn, m in model.named_modules() if isinstance(m, nn.Linear) and fqn not in quantized]
    if hasattr(model, "config") and hasattr(model.config, "save_pretrained"):
        config = copy.deepcopy(model.config)
        config.quantization_config = _quantization_config(scheme, ignore)
        config.save_pretrained(directory)


def is_compressed_tensors_config(quantization_config: dict) -> bool:
    return str(quantization_config.get("quant_method", "")) == "compressed-tensors"


def _matches(fqn: str, module: nn.Module, target: str) -> bool:
    if target.startswith("re:"):
        return re.match(target[3:], fqn) is not None
    return target in (fqn, type(module).__name__)


def _scheme_for(fqn: str, module: nn.Module, config: dict) -> Optional[IntegerScheme]:
    """The scheme of the config group that targets ``module`` (None: ignored or not targeted)."""
    if any(_matches(fqn, module, t) for t in config.get("ignore") or []):
        return None
    for name, group in (config.get("config_groups") or {}).items():
        if not any(_matches(fqn, module, t) for t in group.get("targets", [])):
            continue
        weights, act = group.get("weights") or {}, group.get("input_activations")
        act_quant = next((k for k, v in ACTIVATIONS.items() if v is not None and act is not None
                          and all(act.get(f) == v[f] for f in ("num_bits", "type", "symmetric", "strategy"))), None)
        if weights.get("type") != "int" or (act is not None and act_quant is None) or weights.get("strategy") not in (
                "group", "channel") or weights.get("actorder") not in (None, False):
            raise CheckpointError(f"{fqn}: config group {name!r} ({weights}, input_activations {act}) is not an "
                                  "integer weight scheme this torchao reads (int, group / channel, no actorder; "
                                  "int8 per-token dynamic activations)")
        group_size = -1 if weights["strategy"] == "channel" else int(weights["group_size"])
        return IntegerScheme(int(weights["num_bits"]), group_size, bool(weights.get("symmetric", True)), act_quant)
    return None


def load_compressed_tensors(model: nn.Module, tensors: Dict[str, torch.Tensor], config: dict,
                            device: torch.device) -> Dict[str, torch.Tensor]:
    """state_dict entries for ``model`` from a compressed-tensors checkpoint's tensors."""
    if config.get("format") not in ("pack-quantized", "int-quantized", "naive-quantized"):
        raise CheckpointError(f"compressed-tensors format {config.get('format')!r}: this torchao reads "
                              "pack-quantized, int-quantized and naive-quantized")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    out: Dict[str, torch.Tensor] = {}
    consumed = set()
    for fqn, module in model.named_modules():
        if f"{fqn}.weight_scale" not in tensors:
            continue
        scheme = _scheme_for(fqn, module, config) if isinstance(module, nn.Linear) else None
        if scheme is None:
            raise CheckpointError(f"{fqn}: the checkpoint quantizes it, but no config group targets this "
                                  f"{type(module).__name__}")
        n, k = module.out_features, module.in_features
        middle = 2 ** (scheme.bits - 1)
        zero = tensors.get(f"{fqn}.weight_zero_point")
        try:
            if f"{fqn}.weight_packed" in tensors:
                codes = unpack_int32(tensors[f"{fqn}.weight_packed"], scheme.bits, k, dim=1)
                zeros = None if scheme.sym else unpack_int32(zero, scheme.bits, n, dim=0)
            else:
                codes = tensors[f"{fqn}.weight"].to(torch.int32) + middle
                zeros = None if scheme.sym else zero.to(torch.int32) + middle
            scale = tensors[f"{fqn}.weight_scale"].reshape(n, -1)
            out[f"{fqn}.weight"] = weight_from_codes(codes, zeros, scale, scheme, dtype, device)
        except (ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"{fqn}: the stored tensors do not fit a ({n}, {k}) weight of {scheme} ({e})") from e
        consumed.update(f"{fqn}.{p}" for p in _PARAMS + ("weight",))
    out.update({name: t for name, t in tensors.items() if name not in consumed})
    return out
