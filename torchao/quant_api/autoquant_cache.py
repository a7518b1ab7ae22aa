"""AUTOQUANT_CACHE: measured times of autoquant candidates, a plain dict that pickles, plus safe JSON.

Keys are ``(candidate name, activation shape, weight shape, bias shape or None, activation dtype name)``;
values are ``Timing(ms, device, torch, torchao)``: every entry says where it was measured, so entries from
another device or version are ignored (with one warning) however they got into the cache — through
``save_autoquant_cache`` / ``load_autoquant_cache`` (JSON, no code runs on load) or through the seed's
``pickle.dump(AUTOQUANT_CACHE)`` / ``AUTOQUANT_CACHE.update(pickle.load(f))`` (unpickling a file runs code
from it: only load files you made).
"""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple, Union

import torch

from torchao.version import __version__

__all__ = ["AUTOQUANT_CACHE", "Timing", "cache_key", "measured_here", "usable_timings", "save_autoquant_cache",
           "load_autoquant_cache", "device_name"]

CacheKey = Tuple[str, Tuple[int, ...], Tuple[int, ...], Optional[Tuple[int, ...]], str]


class Timing(NamedTuple):
    """One measured time (milliseconds) and where it was measured."""

    ms: float
    device: str
    torch: str
    torchao: str


AUTOQUANT_CACHE: Dict[CacheKey, Timing] = {}
_FORMAT = "torchao-autoquant-cache/2"


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


def _provenance(device: Union[str, torch.device]) -> Tuple[str, str, str]:
    return device_name(device), torch.__version__, __version__


def measured_here(ms: float, device: Union[str, torch.device] = "cpu") -> Timing:
    """A Timing of ``ms`` milliseconds measured on ``device`` with this torch and torchao."""
    return Timing(float(ms), *_provenance(device))


def usable_timings(device: Union[str, torch.device] = "cpu") -> Dict[CacheKey, float]:
    """The milliseconds of every AUTOQUANT_CACHE entry measured on ``device`` with this torch and torchao.

    Entries measured elsewhere (or without provenance, e.g. bare floats from an old pickle) are left out,
    with one warning that counts them and names where they came from.
    """
    here = _provenance(device)
    usable, foreign = {}, {}
    for key, value in AUTOQUANT_CACHE.items():
        if isinstance(value, Timing) and tuple(value[1:]) == here:
            usable[key] = value.ms
        else:
            origin = tuple(value[1:]) if isinstance(value, Timing) else ("unknown device", "unknown", "unknown")
            foreign[origin] = foreign.get(origin, 0) + 1
    if foreign:
        where = "; ".join(f"{n} from {d} (torch {t}, torchao {a})" for (d, t, a), n in foreign.items())
        warnings.warn(f"autoquant ignores {sum(foreign.values())} AUTOQUANT_CACHE timing(s) measured elsewhere "
                      f"({where}); here is {here[0]} (torch {here[1]}, torchao {here[2]})", stacklevel=3)
    return usable


def save_autoquant_cache(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> None:
    """Write AUTOQUANT_CACHE as JSON (no pickle); every entry keeps its device and versions."""
    del device  # each entry records its own
    entries = [[[k[0], list(k[1]), list(k[2]), None if k[3] is None else list(k[3]), k[4]], list(v)]
               for k, v in AUTOQUANT_CACHE.items() if isinstance(v, Timing)]
    Path(path).write_text(json.dumps({"format": _FORMAT, "entries": entries}, indent=1))


def load_autoquant_cache(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> int:
    """Add the timings of a JSON cache to AUTOQUANT_CACHE; returns how many were measured here.

    Entries measured on another device or with other torch / torchao versions are ignored with one
    warning: their timings would pick the wrong candidates here. Malformed files raise ValueError.
    """
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a torchao autoquant cache of this version (format {data.get('format')!r})")
        entries = {}
        for (name, act, weight, bias, dtype), (ms, dev, torch_version, torchao_version) in data["entries"]:
            key = cache_key(str(name), act, weight, bias, getattr(torch, str(dtype)))
            entries[key] = Timing(float(ms), str(dev), str(torch_version), str(torchao_version))
    except (OSError, KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read autoquant cache {path}: {e}") from e
    here = _provenance(device)
    local = {k: v for k, v in entries.items() if tuple(v[1:]) == here}
    if len(local) < len(entries):
        origins = sorted({f"{v.device} (torch {v.torch}, torchao {v.torchao})" for v in entries.values()
                          if tuple(v[1:]) != here})
        warnings.warn(f"ignoring {len(entries) - len(local)} of {len(entries)} timings in autoquant cache {path}: "
                      f"measured elsewhere ({'; '.join(origins)}); here is {here[0]} (torch {here[1]}, "
                      f"torchao {here[2]})", stacklevel=2)
    AUTOQUANT_CACHE.update(local)
    return len(local)
