"""Configs to JSON and back: ``config_to_dict`` / ``config_from_dict``.

A config becomes ``{"_type": <class name>, "_version": 1, "_data": {field: value}}``; enums, torch dtypes
and granularities become ``{"_type": ..., "_data": ...}`` too. Only the classes in SERIALIZABLE are ever
built from a dict (no import or code from the data), and a config holding anything else (calibration
tensors, functions) is refused with the field's name.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Dict

import torch

from torchao.qtensor.primitives import MappingType, ZeroPointDomain
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
from torchao.quant_api.fqn_config import FqnToConfig

__all__ = ["config_to_dict", "config_from_dict", "SERIALIZABLE"]

VERSION = 1
#: every class config_from_dict may build, by name
SERIALIZABLE: Dict[str, type] = {cls.__name__: cls for cls in (
    Int4WeightOnlyConfig, Int8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig,
    Int8DynamicActivationInt4WeightConfig, IntxWeightOnlyConfig, Float8WeightOnlyConfig,
    Float8DynamicActivationFloat8WeightConfig, FqnToConfig, PerRow, PerTensor,
)}
_ENUMS = {cls.__name__: cls for cls in (MappingType, ZeroPointDomain)}


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum) and type(value).__name__ in _ENUMS:
        return {"_type": type(value).__name__, "_data": value.name}
    if isinstance(value, torch.dtype):
        return {"_type": "torch.dtype", "_data": str(value).replace("torch.", "")}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(value) and type(value).__name__ in SERIALIZABLE:
        return config_to_dict(value)
    raise TypeError(f"config_to_dict: {where} holds a {type(value).__name__}, which cannot be stored as JSON "
                    f"(serializable configs: {sorted(SERIALIZABLE)})")


def config_to_dict(config: AOBaseConfig) -> Dict[str, Any]:
    """A JSON-ready dict of ``config`` (see the module docstring)."""
    name = type(config).__name__
    if name not in SERIALIZABLE or not dataclasses.is_dataclass(config):
        raise TypeError(f"config_to_dict: {name} is not serializable (serializable: {sorted(SERIALIZABLE)})")
    data = {f.name: _encode(getattr(config, f.name), f"{name}.{f.name}") for f in dataclasses.fields(config)}
    return {"_type": name, "_version": VERSION, "_data": data}


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "_type" not in value:
        return {k: _decode(v, f"{where}[{k!r}]") for k, v in value.items()}
    kind, data = value["_type"], value.get("_data")
    if kind in _ENUMS:
        try:
            return _ENUMS[kind][data]
        except KeyError:
            raise ValueError(f"config_from_dict: {where}: {data!r} is not a {kind}") from None
    if kind == "torch.dtype":
        dtype = getattr(torch, str(data), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"config_from_dict: {where}: unknown dtype {data!r}")
        return dtype
    return config_from_dict(value)


def config_from_dict(data: Dict[str, Any]) -> AOBaseConfig:
    """The config ``config_to_dict`` wrote; refuses unknown classes, versions and fields."""
    if not isinstance(data, dict) or "_type" not in data:
        raise ValueError(f"config_from_dict: expected a dict with '_type', got {data!r}")
    name = data["_type"]
    cls = SERIALIZABLE.get(name)
    if cls is None:
        raise ValueError(f"config_from_dict: {name!r} is not a known config (known: {sorted(SERIALIZABLE)}); "
                         "nothing is imported from a config file")
    if data.get("_version", VERSION) > VERSION:
        raise ValueError(f"config_from_dict: {name} version {data['_version']} is newer than this torchao reads "
                         f"({VERSION})")
    fields = {f.name for f in dataclasses.fields(cls)}
    values = data.get("_data") or {}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"config_from_dict: {name} has no fields {unknown} (fields: {sorted(fields)})")
    return cls(**{k: _decode(v, f"{name}.{k}") for k, v in values.items()})
