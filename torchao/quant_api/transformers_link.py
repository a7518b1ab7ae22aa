"""What a quantized transformers model needs so that ``save_pretrained`` / ``from_pretrained`` work.

After ``quantize_`` on a ``transformers.PreTrainedModel`` (whatever the method: RTN configs, GPTQ,
AutoRound), ``mark_transformers_model`` records in the model what transformers records after loading
with ``TorchAoConfig``: ``config.quantization_config`` (a TorchAoConfig whose config describes the stored
weights) and the torchao quantizer, which makes ``save_pretrained`` write the flattened safetensors layout
(torchao.io.flat_state_dict) and ``config.json`` a ``quantization_config`` that ``from_pretrained`` reads.

``config_for_spec`` names the config whose round-to-nearest output has a weight's format; GPTQ or
AutoRound weights are described by the config of the same format (the loader rebuilds the stored tensors,
it does not quantize again).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Dict, Optional

import torch
import torch.nn as nn

from torchao.qtensor import AffineQuantizedTensor, MappingType, QuantSpec, ZeroPointDomain
from torchao.qtensor.primitives import FLOAT8_DTYPES
from torchao.quant_api.configs import (
    AOBaseConfig,
    Float8DynamicActivationFloat8WeightConfig,
    Float8WeightOnlyConfig,
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt4WeightConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    PerRow,
    PerTensor,
)
from torchao.quant_api.fqn_config import DEFAULT_KEY, FqnToConfig

__all__ = ["config_for_spec", "describe_quantized_weights", "is_transformers_model", "mark_transformers_model"]

_ACT_MAPPING = {"int8_per_token_sym": MappingType.SYMMETRIC, "int8_per_token_asym": MappingType.ASYMMETRIC}


def _group(spec: QuantSpec) -> Optional[int]:
    """The group size, None for one group per row."""
    group = spec.group_size
    return None if group is None or group == spec.stored_shape[-1] else group


def _float8_config(spec: QuantSpec) -> AOBaseConfig:
    if spec.act_quant is None:
        return Float8WeightOnlyConfig(spec.target_dtype)
    granularity = PerRow() if spec.block_size[0] == 1 else PerTensor()
    activation = getattr(torch, spec.act_quant.removesuffix("_per_token"))
    return Float8DynamicActivationFloat8WeightConfig(activation, spec.target_dtype, granularity)


def _dynamic_int_config(spec: QuantSpec) -> AOBaseConfig:
    act = _ACT_MAPPING[spec.act_quant]
    if spec.target_dtype == torch.int8 and _group(spec) is not None and act == MappingType.SYMMETRIC:
        return Int8WeightOnlyConfig(_group(spec), int8_activations=True)
    if spec.target_dtype == torch.int8:
        return Int8DynamicActivationInt8WeightConfig(act_mapping_type=act)
    if (spec.target_dtype, spec.quant_min, spec.quant_max, act) == (torch.uint4, 0, 15, MappingType.SYMMETRIC):
        return Int4WeightOnlyConfig(spec.group_size, zero_point_domain=spec.zero_point_domain, int8_activations=True)
    weight = MappingType.SYMMETRIC if spec.zero_point_domain == ZeroPointDomain.NONE else MappingType.ASYMMETRIC
    return Int8DynamicActivationInt4WeightConfig(spec.group_size, mapping_type=weight, act_mapping_type=act)


def _weight_only_int_config(spec: QuantSpec) -> AOBaseConfig:
    sym = spec.zero_point_domain == ZeroPointDomain.NONE
    if spec.target_dtype == torch.int8 and sym:
        return Int8WeightOnlyConfig(_group(spec))
    if spec.target_dtype == torch.uint4 and (spec.quant_min, spec.quant_max) == (0, 15) and spec.group_size:
        return Int4WeightOnlyConfig(spec.group_size, zero_point_domain=spec.zero_point_domain)
    return IntxWeightOnlyConfig(spec.bits, _group(spec), sym=sym, zero_point_domain=spec.zero_point_domain)


def config_for_spec(spec: QuantSpec) -> AOBaseConfig:
    """The (serializable) config whose weights have ``spec``'s format."""
    if spec.target_dtype in FLOAT8_DTYPES:
        return _float8_config(spec)
    if spec.act_quant in _ACT_MAPPING:
        return _dynamic_int_config(spec)
    return _weight_only_int_config(spec)


def describe_quantized_weights(model: nn.Module) -> Optional[AOBaseConfig]:
    """One config when every nn.Linear holds weights of one format (and nothing else is quantized), else an
    FqnToConfig: the most common format as ``_default`` and each exception by name (None: float). None when
    nothing is quantized."""
    quantized: Dict[str, AOBaseConfig] = {}
    float_linears = []
    for fqn, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, AffineQuantizedTensor):
            quantized[fqn] = config_for_spec(weight.spec)
        elif isinstance(module, nn.Linear):
            float_linears.append(fqn)
    if not quantized:
        return None
    default = Counter(quantized.values()).most_common(1)[0][0]
    linears = {fqn for fqn, m in model.named_modules() if isinstance(m, nn.Linear)}
    exceptions = {fqn: c for fqn, c in quantized.items() if c != default or fqn not in linears}
    exceptions.update({fqn: None for fqn in float_linears})
    if not exceptions:
        return default
    return FqnToConfig({**exceptions, DEFAULT_KEY: default})


def is_transformers_model(model: nn.Module) -> bool:
    """Whether ``model`` is a transformers PreTrainedModel (without importing transformers)."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


def mark_transformers_model(model: nn.Module) -> None:
    """Record in a PreTrainedModel that its weights are torchao-quantized (see the module docstring). A model
    quantized by another method of transformers (its ``hf_quantizer`` is not torchao's) is left alone."""
    from transformers import TorchAoConfig
    from transformers.quantizers.quantizer_torchao import TorchAoHfQuantizer

    current = getattr(model, "hf_quantizer", None)
    if current is not None and not isinstance(current, TorchAoHfQuantizer):
        return
    quant_type = describe_quantized_weights(model)
    if quant_type is None:
        return
    config = TorchAoConfig(quant_type)
    model.config.quantization_config = config
    model.hf_quantizer = TorchAoHfQuantizer(config, pre_quantized=True)
    model.is_quantized = True
    model.quantization_method = config.quant_method
