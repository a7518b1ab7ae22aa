"""AUTOQUANT_CACHE: measured times of autoquant candidates, a plain dict that pickles, plus safe JSON.

Keys are ``(candidate name, activation shape, weight shape, bias shape or None, activation dtype name)``;
values are milliseconds. ``pickle.dump(AUTOQUANT_CACHE)`` / ``AUTOQUANT_CACHE.update(pickle.load(f))``
works as in the seed; ``save_autoquant_cache`` / ``load_autoquant_cache`` write and read JSON that also
records the device and versions, and a file from another device or version is ignored with a warning.
"""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

__all__ = ["AUTOQUANT_CACHE", "cache_key", "save_autoquant_cache", "load_autoquant_cache", "device_name"]

CacheKey = Tuple[str, Tuple[int, ...], Tuple[int, ...], Optional[Tuple[int, ...]], str]
AUTOQUANT_CACHE: Dict[CacheKey, float] = {}
_FORMAT = "torchao-autoquant-cache/1"


def cache_key(candidate: str, act_shape, weight_shape, bias_shape, dtype: torch.dtype) -> CacheKey:
    return (candidate, tuple(int(s) for s in act_shape), tuple(int(s) for s in weight_shape),
            None if bias_shape is None else tuple(int(s) for s in bias_shape), str(dtype).replace("torch.", ""))


def device_name(device: Union[str, torch.device] = "cpu") -> str:
    """What the timings belong to: the GPU's name, or the CPU model with its vector ISA and threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (f"{platform.processor() or platform.machine()} {torch.backends.cpu.get_cpu_capability()} "
            f"{torch.get_num_threads()} threads")


def _versions() -> Dict[str, str]:
    import torchao

    return {"torch": torch.__version__, "torchao": torchao.__version__}


def save_autoquant_cache(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> None:
    """Write AUTOQUANT_CACHE as JSON (no pickle), tagged with the device and the torch / torchao versions."""
    entries = [[list(k[0:1]) + [list(k[1]), list(k[2]), None if k[3] is None else list(k[3]), k[4]], v]
               for k, v in AUTOQUANT_CACHE.items()]
    data = {"format": _FORMAT, "device": device_name(device), **_versions(), "entries": entries}
    Path(path).write_text(json.dumps(data, indent=1))


def load_autoquant_cache(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> int:
    """Add the timings of a JSON cache to AUTOQUANT_CACHE; returns how many were added.

    A file made on another device or with other torch / torchao versions is ignored with a warning
    (returns 0): its timings would pick the wrong candidates here. Malformed files raise ValueError.
    """
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a torchao autoquant cache (format {data.get('format')!r})")
        entries = {}
        for (name, act, weight, bias, dtype), ms in data["entries"]:
            entries[cache_key(str(name), act, weight, bias, getattr(torch, str(dtype)))] = float(ms)
    except (OSError, KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read autoquant cache {path}: {e}") from e
    here = {"device": device_name(device), **_versions()}
    mismatch = {k: (data.get(k), v) for k, v in here.items() if data.get(k) != v}
    if mismatch:
        detail = ", ".join(f"{k} {theirs!r} here {ours!r}" for k, (theirs, ours) in mismatch.items())
        warnings.warn(f"ignoring autoquant cache {path}: it was measured elsewhere ({detail})", stacklevel=2)
        return 0
    AUTOQUANT_CACHE.update(entries)
    return len(entries)
