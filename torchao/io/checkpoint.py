"""Quantized checkpoints without pickle: safetensors for the tensors, JSON for what they mean.

``save_quantized(model, dir)`` writes

* ``quantized.safetensors``: every tensor of the state_dict; a quantized weight ``W`` is stored as its
  inner tensors in the portable layout (``W::packed``, ``W::scale``, ...: nibble-packed for <= 4 bits),
* ``quantization.json``: per quantized tensor its QuantSpec (layout, block_size, dtypes, ranges, shape),
  plus the format version;
* in the safetensors header, a sha256 of every stored tensor and of every tensor's metadata entry, so that
  an edited or bit-flipped checkpoint is refused, naming the tensor.

For a ``transformers`` model the directory is also a ``save_pretrained`` directory (config, tokenizer
files if given), so ``load_quantized(dir)`` can rebuild the model from its config. ``load_quantized``
checks everything (names, shapes, dtypes, layouts, metadata against weights) before it changes the
model, then rebuilds the tensor subclasses in the best layout for the target device.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from torchao.qtensor import AffineQuantizedTensor, QuantSpec, ZeroPointDomain, get_layout
from torchao.qtensor.layouts import LAYOUTS, portable_layout, restored_layout

__all__ = ["save_quantized", "load_quantized", "CheckpointError", "WEIGHTS_NAME", "METADATA_NAME"]

WEIGHTS_NAME = "quantized.safetensors"
METADATA_NAME = "quantization.json"
FORMAT_VERSION = 1
_SEP = "::"
_CHECKSUMS = "checksums"  # safetensors header entry: sha256 of every stored tensor and metadata entry


class CheckpointError(ValueError):
    """A quantized checkpoint is missing, corrupt, or does not match the model; nothing was loaded."""


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _dtype(name: str, where: str) -> torch.dtype:
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise CheckpointError(f"{where}: unknown dtype {name!r}")
    return value


def _spec_to_json(spec: QuantSpec) -> dict:
    d = asdict(spec)
    d.update(dtype=_dtype_name(spec.dtype), target_dtype=_dtype_name(spec.target_dtype),
             zero_point_domain=spec.zero_point_domain.name, shape=list(spec.shape), block_size=list(spec.block_size),
             layout_extra=[list(kv) for kv in spec.layout_extra])
    return d


def _spec_from_json(d: dict, name: str) -> QuantSpec:
    try:
        layout = d["layout"]
        if layout not in LAYOUTS:
            raise CheckpointError(f"{name}: unknown layout {layout!r} (known: {sorted(LAYOUTS)})")
        return QuantSpec(
            shape=tuple(int(s) for s in d["shape"]), dtype=_dtype(d["dtype"], name),
            block_size=tuple(int(b) for b in d["block_size"]), target_dtype=_dtype(d["target_dtype"], name),
            quant_min=int(d["quant_min"]), quant_max=int(d["quant_max"]),
            zero_point_domain=ZeroPointDomain[d["zero_point_domain"]], layout=layout,
            transposed=bool(d.get("transposed", False)), act_quant=d.get("act_quant"),
            layout_extra=tuple(tuple(kv) for kv in d.get("layout_extra", [])),
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{name}: malformed quantization metadata ({type(e).__name__}: {e})") from e


def save_quantized(model: nn.Module, directory: Union[str, Path], tokenizer=None) -> Path:
    """Write the model's weights (quantized or not) and their quantization metadata to ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: Dict[str, torch.Tensor] = {}
    quantized: Dict[str, dict] = {}
    seen: Dict[int, str] = {}
    for name, value in model.state_dict(keep_vars=True).items():
        if id(value) in seen:  # tied weights: stored once, pointed to
            quantized.setdefault("__aliases__", {})[name] = seen[id(value)]
            continue
        seen[id(value)] = name
        if isinstance(value, AffineQuantizedTensor):
            value = value.detach()
            portable = value.relayout(portable_layout(value.spec, value.device))
            quantized[name] = _spec_to_json(portable.spec)
            for inner, t in portable.inner_tensors().items():
                tensors[f"{name}{_SEP}{inner}"] = t.detach().cpu().contiguous()
        else:
            tensors[name] = value.detach().cpu().contiguous()
    checksums = {name: _tensor_digest(t) for name, t in tensors.items()}
    checksums.update({f"{name}{_SEP}spec": _spec_digest(spec) for name, spec in quantized.items() if name != "__aliases__"})
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "torchao", "version": str(FORMAT_VERSION),
                                                                 _CHECKSUMS: json.dumps(checksums)})
    _readable_as_usual(directory / WEIGHTS_NAME)
    (directory / METADATA_NAME).write_text(json.dumps({"version": FORMAT_VERSION, "tensors": quantized}, indent=1))
    if hasattr(model, "config") and hasattr(model.config, "save_pretrained"):
        model.config.save_pretrained(directory)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def _tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _spec_digest(spec_json: dict) -> str:
    """sha256 of one tensor's quantization metadata (canonical JSON)."""
    return hashlib.sha256(json.dumps(spec_json, sort_keys=True).encode()).hexdigest()


def _verify(tensors: Dict[str, torch.Tensor], metadata: dict, checksums_json: Optional[str], directory: Path) -> None:
    """Refuse, naming the tensor, any stored tensor or metadata entry that differs from what was saved."""
    try:
        checksums = json.loads(checksums_json)
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError(f"{directory / WEIGHTS_NAME} has no readable checksums: it was not written by "
                              "save_quantized, or was rewritten since") from None
    specs = {n: d for n, d in metadata["tensors"].items() if n != "__aliases__"}
    expected = set(tensors) | {f"{n}{_SEP}spec" for n in specs}
    if set(checksums) != expected:
        odd = sorted(set(checksums) ^ expected)[:8]
        raise CheckpointError(f"{directory}: the files do not belong together (tensors or metadata entries added "
                              f"or removed: {odd})")
    for name, t in tensors.items():
        if _tensor_digest(t) != checksums[name]:
            raise CheckpointError(f"{name}: its bytes, dtype or shape differ from what was saved (checksum mismatch "
                                  f"in {directory / WEIGHTS_NAME}); the file was edited or corrupted")
    for name, spec in specs.items():
        if _spec_digest(spec) != checksums[f"{name}{_SEP}spec"]:
            raise CheckpointError(f"{name}: its quantization metadata in {directory / METADATA_NAME} differs from what "
                                  "was saved with the tensors (checksum mismatch); the file was edited")


def _readable_as_usual(path: Path) -> None:
    """Give ``path`` the permissions of any file this process creates (safetensors writes through a private
    temporary file, mode 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _read(directory: Path) -> Tuple[Dict[str, torch.Tensor], dict, Optional[str]]:
    """(stored tensors, quantization.json, the checksums entry of the safetensors header or None)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    weights, meta = directory / WEIGHTS_NAME, directory / METADATA_NAME
    for path in (weights, meta):
        if not path.exists():
            raise CheckpointError(f"{path} is missing; is {directory} a torchao quantized checkpoint?")
    try:
        metadata = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{meta} is not valid JSON: {e}") from e
    if metadata.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta}: format version {metadata.get('version')!r}, expected {FORMAT_VERSION}")
    try:
        # fresh, aligned copies: safetensors' buffers can sit at any byte offset, and the aten int8 kernel
        # would otherwise copy such weights on every call (it segfaults on them, see kernels/cpu.py)
        tensors = {k: v.clone() for k, v in load_file(str(weights)).items()}
        with safe_open(str(weights), "pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{weights} is corrupt or truncated: {e}") from e
    if not isinstance(metadata.get("tensors"), dict):
        raise CheckpointError(f"{meta}: malformed ('tensors' must map tensor names to their metadata)")
    return tensors, metadata, header.get(_CHECKSUMS)


def _rebuild(name: str, spec: QuantSpec, tensors: Dict[str, torch.Tensor], expected: Optional[torch.Tensor],
             device: torch.device) -> AffineQuantizedTensor:
    layout = get_layout(spec.layout)
    inner = {n: tensors[f"{name}{_SEP}{n}"] for n in layout.tensor_names if f"{name}{_SEP}{n}" in tensors}
    required = [n for n in layout.tensor_names if n != "zero_point"]
    missing = [n for n in required if n not in inner]
    if missing:
        raise CheckpointError(f"{name}: the weights file lacks {missing} for layout {spec.layout!r}")
    if expected is not None and tuple(expected.shape) != spec.shape:
        raise CheckpointError(f"{name}: checkpoint shape {spec.shape} does not match the model's {tuple(expected.shape)}")
    try:
        stored = spec.stored_shape
        aqt = AffineQuantizedTensor(inner, spec)
        int_data, scale, zero_point = aqt.get_plain()
        if tuple(int_data.shape) != stored:
            raise CheckpointError(f"{name}: the packed data unpacks to {tuple(int_data.shape)}, metadata says {stored}")
        values = int_data.to(torch.float32) if int_data.is_floating_point() else int_data  # float8 has no min()
        if values.numel() and (values.min() < spec.quant_min or values.max() > spec.quant_max):
            raise CheckpointError(f"{name}: stored values span [{values.min().item():g}, {values.max().item():g}], "
                                  f"outside the metadata's range [{spec.quant_min}, {spec.quant_max}]")
        plain_spec = replace(spec, shape=stored, transposed=False)
        return AffineQuantizedTensor.from_plain(
            int_data.to(device), scale.to(device), None if zero_point is None else zero_point.to(device),
            replace(plain_spec, layout=restored_layout(plain_spec, device)))
    except CheckpointError:
        raise
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{name}: the stored tensors disagree with the metadata ({e})") from e


def load_quantized(model_or_dir: Union[nn.Module, str, Path], directory: Optional[Union[str, Path]] = None,
                   device: Union[str, torch.device] = "cpu") -> nn.Module:
    """Load a checkpoint written by save_quantized into ``model`` (float or quantized, same architecture),
    or build the model from the directory's transformers config when only a directory is given.
    Returns the model. Raises CheckpointError, naming the tensor, before changing anything."""
    if directory is None:
        directory = model_or_dir
        model = _model_from_config(Path(directory))
    else:
        model = model_or_dir
    directory, device = Path(directory), torch.device(device)
    tensors, metadata, checksums = _read(directory)
    specs = {n: _spec_from_json(d, n) for n, d in metadata["tensors"].items() if n != "__aliases__"}
    aliases = metadata["tensors"].get("__aliases__", {})
    current = model.state_dict(keep_vars=True)
    unknown = [n for n in list(specs) + [k for k in tensors if _SEP not in k] if n not in current]
    if unknown:
        raise CheckpointError(f"the checkpoint has tensors the model does not: {unknown[:8]}")
    missing = [n for n in current if n not in specs and n not in tensors and n not in aliases]
    if missing:
        raise CheckpointError(f"the checkpoint lacks tensors the model has: {missing[:8]}")
    new: Dict[str, torch.Tensor] = {}
    for name, spec in specs.items():
        new[name] = _rebuild(name, spec, tensors, current[name], device)
    for name, t in tensors.items():
        if _SEP in name:
            continue
        if tuple(t.shape) != tuple(current[name].shape):
            raise CheckpointError(f"{name}: checkpoint shape {tuple(t.shape)} does not match the model's "
                                  f"{tuple(current[name].shape)}")
        new[name] = t.to(device)
    for alias, target in aliases.items():
        new[alias] = new[target]
    _verify(tensors, metadata, checksums, directory)
    _assign(model, new)
    return model


def _assign(model: nn.Module, new: Dict[str, torch.Tensor]) -> None:
    """Put every tensor in place (parameters as frozen / trainable as before, buffers as buffers)."""
    shared: Dict[int, nn.Parameter] = {}
    for name, value in new.items():
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        if attr in owner._parameters:
            key = id(value)
            if key not in shared:
                grad = owner._parameters[attr].requires_grad and value.is_floating_point() \
                    and not isinstance(value, AffineQuantizedTensor)
                shared[key] = nn.Parameter(value, requires_grad=grad)
            owner._parameters[attr] = shared[key]
        else:
            owner._buffers[attr] = value


def _model_from_config(directory: Path) -> nn.Module:
    if not (directory / "config.json").exists():
        raise CheckpointError(f"{directory} has no config.json: pass the model to load into")
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModel
    except ImportError as e:  # pragma: no cover
        raise CheckpointError("building a model from its config needs transformers") from e
    config = AutoConfig.from_pretrained(directory)
    auto = AutoModelForCausalLM if any(a.endswith("ForCausalLM") for a in (config.architectures or [])) else AutoModel
    # a real (CPU) construction: non-persistent buffers such as rotary frequencies are not in the file
    return auto.from_config(config).eval()
