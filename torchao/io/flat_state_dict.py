"""A state_dict with quantized tensors <-> plain tensors plus safetensors metadata.

This is the layout transformers' torchao integration writes (``save_pretrained``) and reads
(``from_pretrained``), through ``flatten_tensor_state_dict`` / ``unflatten_tensor_state_dict`` /
``is_metadata_torchao`` (also importable from ``torchao.prototype.safetensors``), and the layout of
``torchao.save_quantized``: one format.

A quantized weight ``<module>.<param>`` (an AffineQuantizedTensor) is stored in its portable layout as
``<module>._<param>_<suffix>`` tensors, suffix in ``qdata`` (the integers, packed for <= 4 bits),
``scale``, ``zero_point`` (``scale_and_zero`` for layouts that fuse them); a plain tensor is stored under
its own name. The metadata (str -> str) holds

* ``tensor_names``: JSON list of every state_dict name;
* per name, JSON ``{"_type": "Tensor"}`` or ``{"_type": "AffineQuantizedTensor", "_data": <QuantSpec>}``;
* ``torchao_format``: the format version; ``torchao_checksums``: sha256 of every stored tensor (by key)
  and of every metadata entry (``<name>::metadata``), so an edited or bit-flipped file is refused,
  naming the tensor; ``torchao_aliases`` (optional): tied names -> the name stored.

Reading builds only the types in ``TENSOR_TYPES`` (no import, no code from the file) and checks every
piece (shapes, dtypes, value range, checksums) before it returns, raising CheckpointError naming the tensor.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Tuple

import torch

from torchao.qtensor import AffineQuantizedTensor, QuantSpec, ZeroPointDomain, get_layout
from torchao.qtensor.base_tensor import TorchAOBaseTensor
from torchao.qtensor.layouts import LAYOUTS, portable_layout, restored_layout

__all__ = ["flatten_tensor_state_dict", "unflatten_tensor_state_dict", "is_metadata_torchao", "CheckpointError",
           "TENSOR_TYPES", "INNER_SUFFIX", "FORMAT_KEY", "CHECKSUMS_KEY", "ALIASES_KEY", "tensor_names"]

FORMAT_VERSION = 1
FORMAT_KEY = "torchao_format"
CHECKSUMS_KEY = "torchao_checksums"
ALIASES_KEY = "torchao_aliases"
NAMES_KEY = "tensor_names"
_META = "::metadata"
_PLAIN, _AQT = "Tensor", "AffineQuantizedTensor"
#: the "_type" values a file may name (anything else is refused)
TENSOR_TYPES = (_PLAIN, _AQT)
#: a layout's inner tensor -> the suffix of its stored key (the names transformers' loader collects); the
#: inner tensors of a layout registered elsewhere keep their own names (torchao.load_quantized reads them)
INNER_SUFFIX = {"int_data": "qdata", "packed": "qdata", "blocks": "qdata", "scale": "scale",
                "zero_point": "zero_point", "scales_and_zeros": "scale_and_zero"}


def _suffix(inner: str) -> str:
    return INNER_SUFFIX.get(inner, inner)


class CheckpointError(ValueError):
    """A quantized checkpoint is missing, corrupt, or does not match the model; nothing was loaded."""


# ---- metadata <-> QuantSpec -------------------------------------------------------------------------

def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _dtype(name: str, where: str) -> torch.dtype:
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise CheckpointError(f"{where}: unknown dtype {name!r}")
    return value


def spec_to_json(spec: QuantSpec) -> dict:
    d = asdict(spec)
    d.update(dtype=_dtype_name(spec.dtype), target_dtype=_dtype_name(spec.target_dtype),
             zero_point_domain=spec.zero_point_domain.name, shape=list(spec.shape), block_size=list(spec.block_size),
             layout_extra=[list(kv) for kv in spec.layout_extra])
    return d


def spec_from_json(d: dict, name: str) -> QuantSpec:
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


# ---- keys and digests ---------------------------------------------------------------------------------

def flat_key(name: str, suffix: str) -> str:
    """``a.b.weight``, ``qdata`` -> ``a.b._weight_qdata``."""
    module, dot, param = name.rpartition(".")
    return f"{module}{dot}_{param}_{suffix}"


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---- writing ------------------------------------------------------------------------------------------

def flatten_tensor_state_dict(state_dict: Dict[str, torch.Tensor],
                              aliases: Optional[Dict[str, str]] = None) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(plain tensors by stored key, safetensors metadata) for ``state_dict`` (see the module docstring).

    Quantized tensors are stored in their portable layout (e.g. the CPU int4 kernel's packing becomes the
    nibble-packed int4 layout). ``aliases``: tied names (not in ``state_dict``) -> the name they share.
    Raises TypeError naming the entry for a value that cannot be stored (e.g. a
    LinearActivationQuantizedTensor wrapping an arbitrary function)."""
    tensors: Dict[str, torch.Tensor] = {}
    metadata: Dict[str, str] = {}
    for name, value in state_dict.items():
        if isinstance(value, AffineQuantizedTensor):
            value = value.detach()
            portable = value.relayout(portable_layout(value.spec, value.device))
            entry = {"_type": _AQT, "_data": spec_to_json(portable.spec)}
            for inner, t in portable.inner_tensors().items():
                tensors[flat_key(name, _suffix(inner))] = t.detach().contiguous()
        elif isinstance(value, TorchAOBaseTensor):
            raise TypeError(f"{name}: a {type(value).__name__} cannot be stored in a checkpoint (only "
                            "AffineQuantizedTensor weights, e.g. from quantize_ with a config, can)")
        elif isinstance(value, torch.Tensor):
            entry = {"_type": _PLAIN}
            tensors[name] = value.detach().contiguous()
        else:
            raise TypeError(f"{name}: state_dict entries must be tensors, got {type(value).__name__}")
        metadata[name] = json.dumps(entry)
    checksums = {key: tensor_digest(t) for key, t in tensors.items()}
    checksums.update({f"{name}{_META}": _text_digest(metadata[name]) for name in state_dict})
    metadata[NAMES_KEY] = json.dumps(list(state_dict))
    metadata[FORMAT_KEY] = str(FORMAT_VERSION)
    metadata[CHECKSUMS_KEY] = json.dumps(checksums)
    if aliases:
        metadata[ALIASES_KEY] = json.dumps(aliases)
    return tensors, metadata


# ---- reading ------------------------------------------------------------------------------------------

def _json(metadata: Dict[str, str], key: str, kind: type, where: str):
    try:
        value = json.loads(metadata[key])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{where}: metadata entry {key!r} is missing or not JSON ({e})") from None
    if not isinstance(value, kind):
        raise CheckpointError(f"{where}: metadata entry {key!r} should be a JSON {kind.__name__}")
    return value


def tensor_names(metadata: Dict[str, str]) -> List[str]:
    """The state_dict names a torchao metadata lists (CheckpointError if malformed)."""
    names = _json(metadata, NAMES_KEY, list, "torchao metadata")
    if not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"torchao metadata: {NAMES_KEY!r} must list strings")
    return names


def is_metadata_torchao(metadata: Optional[Dict[str, str]]) -> bool:
    """Whether safetensors ``metadata`` was written by flatten_tensor_state_dict (it lists its tensor names).

    False for any other file; raises CheckpointError for one that claims to be ours but is malformed, of a
    newer format version, or names a tensor type this package does not build (e.g. another library's)."""
    if not isinstance(metadata, dict) or NAMES_KEY not in metadata:
        return False
    _parsed(metadata)
    return True


@dataclass(frozen=True)
class _Index:
    """A torchao metadata, parsed and validated: entries by name, stored key -> (name, inner tensor or None),
    and the checksums."""

    entries: Dict[str, dict]
    stored: Dict[str, Tuple[str, Optional[str]]]
    digests: Dict[str, str]


def _parsed(metadata: Dict[str, str]) -> _Index:
    """The metadata parsed once per distinct content: transformers unflattens a checkpoint one layer at a time
    with the same metadata, which would otherwise be parsed again for every layer (quadratic in layers)."""
    return _parse(tuple(metadata.items()))


@functools.lru_cache(maxsize=8)
def _parse(items: Tuple[Tuple[str, str], ...]) -> _Index:
    metadata = dict(items)
    version = metadata.get(FORMAT_KEY, str(FORMAT_VERSION))
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"torchao metadata: format version {version!r}; this torchao reads {FORMAT_VERSION}")
    entries = {}
    for name in tensor_names(metadata):
        entries[name] = _json(metadata, name, dict, name)
        if entries[name].get("_type") not in TENSOR_TYPES:
            raise CheckpointError(f"{name}: unknown tensor type {entries[name].get('_type')!r} in the checkpoint "
                                  f"metadata (this torchao builds only {list(TENSOR_TYPES)}; nothing is imported "
                                  "from a file)")
    return _Index(entries, _stored_keys(entries), _json(metadata, CHECKSUMS_KEY, dict, "torchao metadata"))


class _Checksums:
    """The checksums entry, checked against each tensor and metadata entry as it is read."""

    def __init__(self, digests: Dict[str, str]):
        self.digests = digests

    def check_tensor(self, key: str, t: torch.Tensor, name: str) -> None:
        if key not in self.digests:
            raise CheckpointError(f"{name}: the stored tensor {key!r} has no checksum: it was added to the file "
                                  "after it was written")
        if tensor_digest(t) != self.digests[key]:
            raise CheckpointError(f"{key}: its bytes, dtype or shape differ from what was saved (checksum "
                                  "mismatch); the file was edited or corrupted")

    def check_entry(self, name: str, text: str) -> None:
        if self.digests.get(f"{name}{_META}") != _text_digest(text):
            raise CheckpointError(f"{name}: its metadata entry differs from what was saved with the tensors "
                                  "(checksum mismatch); the file was edited")


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a fresh copy when it starts at an odd address (safetensors' buffers can sit at any byte
    offset; the aten int8 kernel needs aligned data)."""
    return t if t.data_ptr() % 64 == 0 else t.clone()


def _rebuild(name: str, spec: QuantSpec, pieces: Dict[str, torch.Tensor],
             device: Optional[torch.device]) -> AffineQuantizedTensor:
    layout = get_layout(spec.layout)
    missing = [_suffix(n) for n in layout.tensor_names if n != "zero_point" and n not in pieces]
    if missing:
        raise CheckpointError(f"{name}: the checkpoint lacks {[flat_key(name, s) for s in missing]} for layout "
                              f"{spec.layout!r}")
    device = next(iter(pieces.values())).device if device is None else device
    try:
        stored = spec.stored_shape
        int_data, scale, zero_point = AffineQuantizedTensor(pieces, spec).get_plain()
        if tuple(int_data.shape) != stored:
            raise CheckpointError(f"{name}: the packed data unpacks to {tuple(int_data.shape)}, metadata says {stored}")
        values = int_data.to(torch.float32) if int_data.is_floating_point() else int_data  # float8 has no min()
        if values.numel() and (values.min() < spec.quant_min or values.max() > spec.quant_max):
            raise CheckpointError(f"{name}: stored values span [{values.min().item():g}, {values.max().item():g}], "
                                  f"outside the metadata's range [{spec.quant_min}, {spec.quant_max}]")
        plain_spec = replace(spec, shape=stored, transposed=False)
        out = AffineQuantizedTensor.from_plain(
            _aligned(int_data.to(device)), scale.to(device), None if zero_point is None else zero_point.to(device),
            replace(plain_spec, layout=restored_layout(plain_spec, device)))
        return out.t() if spec.transposed else out
    except CheckpointError:
        raise
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{name}: the stored tensors disagree with the metadata ({e})") from e


def _stored_keys(entries: Dict[str, dict]) -> Dict[str, Tuple[str, Optional[str]]]:
    """stored key -> (state_dict name, inner tensor name or None for a plain tensor)."""
    keys: Dict[str, Tuple[str, Optional[str]]] = {}
    for name, entry in entries.items():
        if entry["_type"] == _PLAIN:
            keys[name] = (name, None)
            continue
        for inner in get_layout(spec_from_json(entry.get("_data"), name).layout).tensor_names:
            keys[flat_key(name, _suffix(inner))] = (name, inner)
    return keys


def _renamed(key: str, stored: Dict[str, Tuple[str, Optional[str]]]) -> Optional[str]:
    """The stored key that ``key`` names under another module prefix (a checkpoint of ``XForCausalLM``
    loaded into ``XModel`` or back), when exactly one does."""
    found = [k for k in stored if k.endswith("." + key) or key.endswith("." + k)]
    return found[0] if len(found) == 1 else None


def unflatten_tensor_state_dict(tensors: Dict[str, torch.Tensor], metadata: Dict[str, str], *,
                                device: Optional[torch.device] = None
                                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(state_dict entries built from ``tensors``, the tensors no metadata entry describes).

    ``tensors``: stored keys -> tensors, all the pieces of every quantized tensor present (e.g. one layer's,
    or a whole checkpoint's); keys may carry another module prefix than the file's. Quantized tensors are
    rebuilt in the best layout for ``device`` (default: where their pieces are). Raises CheckpointError,
    naming the tensor, for anything missing, edited, malformed or of an unknown type."""
    if not is_metadata_torchao(metadata):
        raise CheckpointError("the safetensors metadata is not torchao's (no 'tensor_names' entry): the file was "
                              "not written by flatten_tensor_state_dict / save_quantized")
    index = _parsed(metadata)
    entries, stored, checksums = index.entries, index.stored, _Checksums(index.digests)
    pieces: Dict[str, Tuple[str, Dict[str, torch.Tensor]]] = {}
    result: Dict[str, torch.Tensor] = {}
    leftover: Dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        saved_key = key if key in stored else _renamed(key, stored)
        if saved_key is None:
            leftover[key] = t
            continue
        name, inner = stored[saved_key]
        # the same prefix change for the state_dict name as for the stored key
        target = key[: len(key) - len(saved_key)] + name if key.endswith(saved_key) \
            else name[len(saved_key) - len(key):]
        checksums.check_tensor(saved_key, t, target)
        checksums.check_entry(name, metadata[name])
        if inner is None:
            result[target] = t
        else:
            pieces.setdefault(target, (name, {}))[1][inner] = t
    for target, (name, parts) in pieces.items():
        result[target] = _rebuild(target, spec_from_json(entries[name].get("_data"), target), parts, device)
    return result, leftover
