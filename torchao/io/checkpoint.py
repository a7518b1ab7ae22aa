"""Quantized checkpoints without pickle, in the layout transformers reads: one format.

``save_quantized(model, dir)`` writes ``model.safetensors``: every tensor of the state_dict, a quantized
weight ``<module>.weight`` as its portable inner tensors ``<module>._weight_qdata`` / ``_scale`` /
``_zero_point``, with per-tensor metadata (QuantSpec) and sha256 checksums of every tensor and metadata
entry in the safetensors header (torchao.io.flat_state_dict). For a ``transformers`` model it is
``model.save_pretrained(dir)`` (config.json with a torchao ``quantization_config``, generation config,
tokenizer files if given): plain ``AutoModelForCausalLM.from_pretrained(dir)`` loads it.

``load_quantized`` is the path without transformers' loader: into a given model (float or quantized, same
architecture), or into one built from the directory's config. It checks everything (names, shapes, dtypes,
layouts, checksums) before it changes the model, then rebuilds the tensor subclasses in the best layout for
the target device; an error is a CheckpointError naming the tensor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from torchao.io.flat_state_dict import (
    ALIASES_KEY,
    CheckpointError,
    flatten_tensor_state_dict,
    is_metadata_torchao,
    unflatten_tensor_state_dict,
)
from torchao.io.compressed_tensors_format import (
    is_compressed_tensors_config,
    load_compressed_tensors,
    save_compressed_tensors,
)
from torchao.io.gguf_format import save_gguf
from torchao.io.gptq_format import PACKINGS, load_gptq, packing_of, save_gptq
from torchao.qtensor import AffineQuantizedTensor
from torchao.quant_api.transformers_link import is_transformers_model, mark_transformers_model

__all__ = ["save_quantized", "load_quantized", "CheckpointError", "WEIGHTS_NAME", "INDEX_NAME"]

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"  # a sharded save_pretrained checkpoint


def save_quantized(model: nn.Module, directory: Union[str, Path], tokenizer=None, format: str = "torchao") -> Path:
    """Write the model's weights (quantized or not) and their quantization metadata to ``directory``.

    format: ``"torchao"`` (every config and layout; a transformers model through ``save_pretrained``, see the
    module docstring), ``"gptq"`` / ``"auto_round"`` / ``"compressed_tensors"`` (the layouts serving engines
    load), ``"gguf"`` (``model.gguf`` for llama.cpp; pass the tokenizer). torchao.io.gptq_format,
    compressed_tensors_format and gguf_format say what each can hold; the rest is refused, naming the layer,
    before anything is written."""
    if format not in SAVERS:
        raise ValueError(f"save_quantized: unknown format {format!r} (formats: {sorted(SAVERS)})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    SAVERS[format](model, directory, tokenizer)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    for path in directory.glob("*.safetensors"):
        _readable_as_usual(path)
    return directory


def _save_torchao(model: nn.Module, directory: Path, tokenizer=None) -> None:
    if is_transformers_model(model):
        mark_transformers_model(model)
        model.save_pretrained(directory)
    else:
        _save_file(model, directory / WEIGHTS_NAME)


def _save_file(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state, aliases, first = {}, {}, {}
    for name, value in model.state_dict(keep_vars=True).items():
        if id(value) in first:  # tied weights: stored once, pointed to
            aliases[name] = first[id(value)]
        else:
            first[id(value)] = name
            state[name] = value
    tensors, metadata = flatten_tensor_state_dict(state, aliases)
    save_file({k: t.cpu() for k, t in tensors.items()}, str(path), metadata=metadata)


def _readable_as_usual(path: Path) -> None:
    """Give ``path`` the permissions of any file this process creates (safetensors writes through a private
    temporary file, mode 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _weight_files(directory: Path) -> list:
    index = directory / INDEX_NAME
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index} is malformed: {e}") from e
        return [directory / shard for shard in shards]
    return [directory / WEIGHTS_NAME]


def _read(directory: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(every stored tensor, the safetensors metadata) of the checkpoint in ``directory``."""
    from safetensors import SafetensorError, safe_open

    tensors: Dict[str, torch.Tensor] = {}
    metadata: Dict[str, str] = {}
    for path in _weight_files(directory):
        if not path.exists():
            raise CheckpointError(f"{path} is missing; is {directory} a torchao quantized checkpoint?")
        try:
            with safe_open(str(path), "pt") as f:
                metadata.update(f.metadata() or {})
                tensors.update({key: f.get_tensor(key) for key in f.keys()})
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path} is corrupt or truncated: {e}") from e
    return tensors, metadata


#: (does a config.json quantization_config name this format, reader(model, tensors, config, device))
ENGINE_READERS = ((lambda config: packing_of(config) is not None, load_gptq),
                  (is_compressed_tensors_config, load_compressed_tensors))


def _engine_reader(config: dict):
    return next((reader for names, reader in ENGINE_READERS if names(config)), None)


def _engine_quantization_config(directory: Path) -> Optional[dict]:
    """config.json's quantization_config when it names a GPTQ / AutoRound / compressed-tensors checkpoint,
    else None."""
    for name in ("config.json", "quantization_config.json"):
        path = directory / name
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{path} is not valid JSON: {e}") from e
            config = data.get("quantization_config", data) if name == "config.json" else data
            if isinstance(config, dict) and _engine_reader(config) is not None:
                return config
    return None


def _torchao_entries(directory: Path, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str],
                     device: torch.device) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    if not is_metadata_torchao(metadata):
        raise CheckpointError(f"{directory}: the weights have no torchao metadata; it was not written by "
                              "save_quantized or save_pretrained of a torchao-quantized model")
    new, leftover = unflatten_tensor_state_dict(tensors, metadata, device=device)
    if leftover:
        raise CheckpointError(f"{directory}: stored tensors that no metadata entry describes: {sorted(leftover)[:8]}")
    return new, json.loads(metadata.get(ALIASES_KEY, "{}"))


def load_quantized(model_or_dir: Union[nn.Module, str, Path], directory: Optional[Union[str, Path]] = None,
                   device: Union[str, torch.device] = "cpu") -> nn.Module:
    """Load a checkpoint written by save_quantized (or by ``save_pretrained`` of a torchao-quantized
    transformers model, or a GPTQ / AutoRound checkpoint from another tool) into ``model`` (float or
    quantized, same architecture), or into a model built from the directory's transformers config when only a
    directory is given. Quantized weights become AffineQuantizedTensors in the kernel layout for ``device``.
    Returns the model. Raises CheckpointError, naming the tensor, before changing anything."""
    if directory is None:
        directory = model_or_dir
        model = _model_from_config(Path(directory))
    else:
        model = model_or_dir
    directory, device = Path(directory), torch.device(device)
    tensors, metadata = _read(directory)
    engine_config = _engine_quantization_config(directory)
    if engine_config is not None:
        new, aliases = _engine_reader(engine_config)(model, tensors, engine_config, device), {}
    else:
        new, aliases = _torchao_entries(directory, tensors, metadata, device)
    current = model.state_dict(keep_vars=True)
    unknown = [n for n in new if n not in current]
    if unknown:
        raise CheckpointError(f"the checkpoint has tensors the model does not: {unknown[:8]}")
    missing = [n for n in current if n not in new and n not in aliases and not _tied_in_model(model, n, new)]
    if missing:
        raise CheckpointError(f"the checkpoint lacks tensors the model has: {missing[:8]}")
    for name, t in current.items():  # in the model's order
        if name in new and tuple(new[name].shape) != tuple(t.shape):
            raise CheckpointError(f"{name}: checkpoint shape {tuple(new[name].shape)} does not match the model's "
                                  f"{tuple(t.shape)}")
    new = {name: t.to(device) for name, t in new.items()}
    for alias, target in aliases.items():
        new[alias] = new[target]
    _assign(model, new)
    if is_transformers_model(model):
        mark_transformers_model(model)
    return model


def _tied_in_model(model: nn.Module, name: str, new: Dict[str, torch.Tensor]) -> bool:
    """Whether ``name`` is a parameter the model ties to one the checkpoint has (save_pretrained stores a tied
    weight once)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    return name in params and any(params[name] is params.get(other) for other in new if other != name)


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


#: format name -> writer(model, directory, tokenizer)
SAVERS = {"torchao": _save_torchao, "compressed_tensors": lambda model, d, tokenizer: save_compressed_tensors(model, d),
          "gguf": save_gguf, **{name: (lambda model, d, tokenizer, p=p: save_gptq(model, d, p)) for name, p in PACKINGS.items()}}


def _model_from_config(directory: Path) -> nn.Module:
    if not (directory / "config.json").exists():
        raise CheckpointError(f"{directory} has no config.json: pass the model to load into")
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModel
    except ImportError as e:  # pragma: no cover
        raise CheckpointError("building a model from its config needs transformers") from e
    config = AutoConfig.from_pretrained(directory)
    if hasattr(config, "quantization_config"):  # the weights are read here, not by a transformers quantizer
        del config.quantization_config
    auto = AutoModelForCausalLM if any(a.endswith("ForCausalLM") for a in (config.architectures or [])) else AutoModel
    # a real (CPU) construction: non-persistent buffers such as rotary frequencies are not in the file
    return auto.from_config(config).eval()
