"""The GPTQ / AutoRound checkpoint layout (what vLLM, SGLang, TGI, auto-round and GPTQModel load).

Per quantized Linear ``<m>`` (weight (N, K), groups of G input features, b bits in {2, 3, 4, 8}):

* ``<m>.qweight`` int32 (K*b/32, N): the unsigned codes q in [0, 2^b), packed along K (int32_packing);
* ``<m>.qzeros`` int32 (K/G, N*b/32): the integer zero points packed along N; stored as z ("auto_round"
  packing, also GPTQ v2) or as z - 1 (GPTQ v1, ``checkpoint_format: "gptq"``);
* ``<m>.scales`` float16 (K/G, N); ``<m>.g_idx`` int32 (K,) = k // G (GPTQ only; groups are contiguous, so
  ``desc_act`` is false: act-order GPTQ here already regroups contiguously).

The value is (q - z) * scale. ``config.json`` gets a ``quantization_config`` with bits / group_size
(-1: one group per row) / sym. Mapping rules (refused otherwise, naming the layer): integer zero points
(ZeroPointDomain.INT, or symmetric weights, stored with z = 2^(b-1)); one bit width, group size and
symmetry for the whole model; weight-only (no activation quantization); nn.Linear layers.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from torchao.io.flat_state_dict import CheckpointError
from torchao.io.int32_packing import pack_int32, unpack_int32
from torchao.io.integer_codes import (
    IntegerScheme,
    UnsupportedExport,
    integer_codes,
    quantized_linears,
    scheme_of_model,
    weight_from_codes,
)

__all__ = ["FORMAT_BITS", "PACKINGS", "save_gptq", "load_gptq", "packing_of", "UnsupportedExport"]

#: bit widths the GPTQ / AutoRound layouts define
FORMAT_BITS = (2, 3, 4, 8)
_TENSORS = ("qweight", "qzeros", "scales", "g_idx")


def export_linear_weights(model: nn.Module, zero_offset: int, with_g_idx: bool, fmt_name: str) -> Dict[str, torch.Tensor]:
    """The state_dict in the layout, quantized weights as qweight / qzeros (z - ``zero_offset``) / scales
    (/ g_idx), everything else as it is (CPU, contiguous)."""
    out: Dict[str, torch.Tensor] = {}
    quantized = quantized_linears(model)
    for name, value in model.state_dict().items():
        fqn, _, attr = name.rpartition(".")
        if fqn in quantized and attr == "weight":
            w = integer_codes(fqn, value, fmt_name, FORMAT_BITS)
            bits = w.scheme.bits
            out[f"{fqn}.qweight"] = pack_int32(w.codes.t(), bits, dim=0).cpu()
            out[f"{fqn}.qzeros"] = pack_int32((w.zeros - zero_offset).t() & (2**bits - 1), bits, dim=1).cpu()
            out[f"{fqn}.scales"] = w.scale.t().to(torch.float16).contiguous().cpu()
            if with_g_idx:
                k = value.shape[1]
                out[f"{fqn}.g_idx"] = torch.arange(k, dtype=torch.int32) // (k // w.zeros.shape[1])
        else:
            out[name] = value.detach().cpu().contiguous()
    return out


def import_linear_weights(model: nn.Module, tensors: Dict[str, torch.Tensor], scheme: IntegerScheme, packing: "Packing",
                          device: torch.device) -> Dict[str, torch.Tensor]:
    """state_dict entries for ``model`` from a checkpoint in the layout: each qweight / qzeros / scales group
    becomes an AffineQuantizedTensor (integer zero point; the kernel layout for ``device``), other tensors
    pass through. Raises CheckpointError naming the layer."""
    out: Dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for name, value in tensors.items():
        fqn, _, attr = name.rpartition(".")
        if attr not in _TENSORS:
            out[name] = value
            continue
        if attr != "qweight":
            continue
        module = modules.get(fqn)
        if not isinstance(module, nn.Linear):
            raise CheckpointError(f"{fqn}: the checkpoint quantizes it, but the model has no nn.Linear there")
        missing = [f"{fqn}.{t}" for t in ("qzeros", "scales") if f"{fqn}.{t}" not in tensors]
        if missing:
            raise CheckpointError(f"{fqn}: the checkpoint lacks {missing}")
        n, k = module.out_features, module.in_features
        group = k if scheme.group_size == -1 else scheme.group_size
        if k % group:
            raise CheckpointError(f"{fqn}: in_features {k} is not a multiple of group_size {group}")
        try:
            if packing.awq:
                codes, zeros = _unpack_awq(value, scheme.bits, n).t(), _unpack_awq(tensors[f"{fqn}.qzeros"], scheme.bits, n).t()
            else:
                codes = unpack_int32(value, scheme.bits, k, dim=0).t()
                zeros = unpack_int32(tensors[f"{fqn}.qzeros"], scheme.bits, n, dim=1).t()
            zeros = (zeros + packing.zero_offset) & (2**scheme.bits - 1)
            scales = tensors[f"{fqn}.scales"].t()
        except ValueError as e:
            raise CheckpointError(f"{fqn}: {e}") from None
        if tuple(codes.shape) != (n, k) or tuple(scales.shape) != (n, k // group) or tuple(zeros.shape) != (n, k // group):
            raise CheckpointError(f"{fqn}: qweight / qzeros / scales of shapes {tuple(value.shape)}, "
                                  f"{tuple(tensors[f'{fqn}.qzeros'].shape)}, {tuple(tensors[f'{fqn}.scales'].shape)} "
                                  f"do not fit a ({n}, {k}) weight in groups of {group}")
        g_idx = tensors.get(f"{fqn}.g_idx")
        if g_idx is not None and not torch.equal(g_idx.to(torch.int64), torch.arange(k) // group):
            raise CheckpointError(f"{fqn}: g_idx assigns input features to groups out of order (GPTQ desc_act); "
                                  "only contiguous groups are supported")
        asym = IntegerScheme(scheme.bits, scheme.group_size, sym=False)  # symmetric ones carry z = 2^(b-1) too
        out[f"{fqn}.weight"] = weight_from_codes(codes, zeros, scales, asym, dtype, device)
    return out


@dataclass(frozen=True)
class Packing:
    """One flavour of the layout: how zero points are stored and what config.json says."""

    name: str
    zero_offset: int  # stored qzeros = z - zero_offset
    with_g_idx: bool
    quantization_config: Callable[[IntegerScheme], dict]
    awq: bool = False  # read only: AutoAWQ's qweight (K, N*b/32), packed along N in AWQ's interleaved order


PACKINGS: Dict[str, Packing] = {
    "auto_round": Packing("auto_round", 0, False, lambda s: {
        "quant_method": "auto-round", "packing_format": "auto_round", "bits": s.bits, "group_size": s.group_size,
        "sym": s.sym, "data_type": "int"}),
    "gptq": Packing("gptq", 1, True, lambda s: {
        "quant_method": "gptq", "checkpoint_format": "gptq", "bits": s.bits, "group_size": s.group_size,
        "sym": s.sym, "desc_act": False}),
}


def packing_of(quantization_config: dict) -> Optional[Packing]:
    """The packing a config.json quantization_config describes (None: not a GPTQ / AutoRound checkpoint)."""
    method = str(quantization_config.get("quant_method", "")).lower()
    if method == "gptq":
        v1 = quantization_config.get("checkpoint_format", "gptq") == "gptq"
        return PACKINGS["gptq"] if v1 else Packing("gptq_v2", 0, True, PACKINGS["gptq"].quantization_config)
    if method in ("auto-round", "intel/auto-round", "auto_round"):
        packing = str(quantization_config.get("packing_format", "auto_round"))
        if "awq" in packing:
            return _AWQ
        return PACKINGS["gptq"] if "gptq" in packing else PACKINGS["auto_round"]
    if method == "awq":
        return _AWQ
    return None


_AWQ = Packing("awq", 0, False, lambda s: {}, awq=True)
#: AutoAWQ's 4-bit order: the code of output column i of each group of 8 sits in nibble _AWQ_SLOT[i]
_AWQ_SLOT = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])


def _unpack_awq(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """(rows, N) codes from AWQ-packed (rows, N*b/32) int32."""
    if bits != 4:
        raise ValueError(f"the AWQ layout is read for 4 bits, got {bits}")
    slots = unpack_int32(packed, bits, n, dim=1).reshape(packed.shape[0], n // 8, 8)
    return slots[..., _AWQ_SLOT].reshape(packed.shape[0], n)


def save_gptq(model: nn.Module, directory: Path, packing: Packing) -> None:
    """Write ``model`` (its quantized Linear layers, one scheme) as model.safetensors + config.json."""
    from safetensors.torch import save_file

    scheme = scheme_of_model(model, packing.name, FORMAT_BITS)
    tensors = export_linear_weights(model, packing.zero_offset, packing.with_g_idx, packing.name)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    if hasattr(model, "config") and hasattr(model.config, "save_pretrained"):
        config = copy.deepcopy(model.config)
        config.quantization_config = packing.quantization_config(scheme)
        config.save_pretrained(directory)
    else:
        (directory / "quantization_config.json").write_text(json.dumps(packing.quantization_config(scheme), indent=1))


def load_gptq(model: nn.Module, tensors: Dict[str, torch.Tensor], quantization_config: dict,
              device: torch.device) -> Dict[str, torch.Tensor]:
    """state_dict entries for ``model`` from a GPTQ / AutoRound checkpoint's tensors."""
    packing = packing_of(quantization_config)
    try:
        bits = int(quantization_config.get("bits", quantization_config.get("w_bit")))
        group_size = int(quantization_config.get("group_size", quantization_config.get("q_group_size", -1)))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"quantization_config: bits / group_size missing or malformed ({e})") from None
    if bits not in FORMAT_BITS:
        raise CheckpointError(f"quantization_config: {bits} bits; the {packing.name} layout is read for {list(FORMAT_BITS)}")
    scheme = IntegerScheme(bits, group_size, bool(quantization_config.get("sym", False)))
    return import_linear_weights(model, tensors, scheme, packing, device)
