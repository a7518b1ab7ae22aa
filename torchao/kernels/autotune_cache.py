"""Tuned Triton launch configs, per device name and shape bucket, in a JSON file that can be shipped.

The cache maps ``device name -> key -> config``; a key names the op, the M bucket and the (N, K,
group) problem, e.g. ``int4_wo|decode|N4096|K4096|G128``. ``TORCHAO_AUTOTUNE_CACHE`` names a file that
is read on first use and rewritten after each new tuning result.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Union

__all__ = ["KernelConfig", "AutotuneCache", "AUTOTUNE_CACHE", "save_autotune_cache", "load_autotune_cache"]

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class KernelConfig:
    """One launch of triton_mm: ``kernel`` is "gemv" or "dot"; block sizes, K splits, warps, stages."""

    kernel: str
    block_m: int
    block_n: int
    block_k: int
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 2


class AutotuneCache:
    """Thread-safe dict of tuned configs with JSON save / load."""

    def __init__(self, path: Optional[Union[str, Path]] = None):
        self.path = Path(path) if path else None
        self._entries: Dict[str, Dict[str, KernelConfig]] = {}
        self._lock = threading.Lock()
        self._loaded = False

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self.path is not None and self.path.exists():
                self.load(self.path)

    def lookup(self, device: str, key: str) -> Optional[KernelConfig]:
        with self._lock:
            self._ensure_loaded()
            return self._entries.get(device, {}).get(key)

    def store(self, device: str, key: str, config: KernelConfig) -> None:
        with self._lock:
            self._ensure_loaded()
            self._entries.setdefault(device, {})[key] = config
        if self.path is not None:
            self.save(self.path)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())

    def save(self, path: Union[str, Path]) -> None:
        with self._lock:
            data = {"version": _FORMAT_VERSION,
                    "devices": {d: {k: asdict(c) for k, c in e.items()} for d, e in self._entries.items()}}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)

    def load(self, path: Union[str, Path]) -> int:
        """Merge the configs of a saved file; returns how many were read. Raises ValueError on a bad file."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("version") != _FORMAT_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {_FORMAT_VERSION}")
            entries = {d: {k: KernelConfig(**c) for k, c in e.items()} for d, e in data["devices"].items()}
        except (OSError, KeyError, TypeError, json.JSONDecodeError, ValueError) as e:
            raise ValueError(f"cannot read Triton autotune cache {path}: {e}") from e
        self._entries_merge(entries)
        return sum(len(e) for e in entries.values())

    def _entries_merge(self, entries) -> None:
        for device, configs in entries.items():
            self._entries.setdefault(device, {}).update(configs)


AUTOTUNE_CACHE = AutotuneCache(os.environ.get("TORCHAO_AUTOTUNE_CACHE"))


def save_autotune_cache(path: Union[str, Path]) -> None:
    """Write every tuned Triton config (all devices) to a JSON file."""
    AUTOTUNE_CACHE.save(path)


def load_autotune_cache(path: Union[str, Path]) -> int:
    """Merge tuned Triton configs from a JSON file written by save_autotune_cache."""
    return AUTOTUNE_CACHE.load(path)
