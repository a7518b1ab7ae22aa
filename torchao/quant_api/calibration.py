"""Block-sequential calibration shared by GPTQ and AutoRound.

1. ``calibration_batches``: local calibration data (token-id tensors, a dataloader, or texts with a
   tokenizer) -> a list of model inputs.
2. ``get_block_names``: the model's repeated transformer blocks (or an explicit list).
3. ``capture_block_inputs``: run the model up to the first block and keep each batch's block inputs.
4. ``BlockInputs`` / ``run_block``: feed a block, swap its outputs in as the next block's inputs; only the
   current block is moved to the compute device, the cached activations stay on ``offload_device``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

__all__ = [
    "CalibrationError",
    "calibration_batches",
    "check_batches_for_model",
    "get_block_names",
    "get_module",
    "set_module",
    "capture_block_inputs",
    "blocks_are_chained",
    "BlockInput",
    "run_block",
    "block_output",
    "with_hidden_states",
    "move_to",
    "stackable",
    "map_hidden_states",
]


class CalibrationError(ValueError):
    """Calibration cannot start (no data, data too short, no blocks); raised before any weight changes."""


# ---- module lookup -------------------------------------------------------------------------------


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` ("" is the model itself)."""
    return model.get_submodule(name) if name else model


def set_module(model: nn.Module, name: str, new_module: nn.Module) -> None:
    """Replace the submodule called ``name``."""
    parent_name, _, child = name.rpartition(".")
    setattr(get_module(model, parent_name), child, new_module)


def get_block_names(model: nn.Module) -> List[str]:
    """Fully qualified names of the model's transformer blocks, in order.

    The blocks are the children of the longest ``nn.ModuleList`` whose entries share one class and
    contain Linear layers (``model.layers`` of a Llama, ``encoder.layer`` of a BERT, a plain stack).
    Returns [] when there is none.
    """
    best: List[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) < 2:
            continue
        children = list(module)
        same_class = all(type(c) is type(children[0]) for c in children)
        has_linear = any(isinstance(m, nn.Linear) for m in children[0].modules())
        if same_class and has_linear and len(children) > len(best):
            best = [f"{name}.{i}" if name else str(i) for i in range(len(children))]
    return best


# ---- calibration data ------------------------------------------------------------------------------

Batch = Union[Dict[str, Any], Tuple[Any, ...]]


def _texts_to_batches(texts: Sequence[str], tokenizer, seqlen: int, n_samples: int) -> List[Batch]:
    ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids[0]
    windows = ids.numel() // seqlen
    if windows == 0:
        raise CalibrationError(
            f"calibration text has {ids.numel()} tokens, fewer than one sequence of seqlen={seqlen}; "
            "give more text or a smaller seqlen"
        )
    return [{"input_ids": ids[i * seqlen:(i + 1) * seqlen].unsqueeze(0)} for i in range(min(windows, n_samples))]


def _as_batch(item) -> Batch:
    if isinstance(item, dict):
        return dict(item)
    if isinstance(item, torch.Tensor):
        if not item.is_floating_point() and item.dim() == 1:
            item = item.unsqueeze(0)
        return (item,)
    if isinstance(item, (tuple, list)):
        return tuple(item)
    raise CalibrationError(f"cannot use a calibration item of type {type(item).__name__}; give tensors or dicts")


def _token_ids(batch: Batch) -> Optional[torch.Tensor]:
    """The token ids of a batch: its ``input_ids`` entry, or its first positional tensor."""
    if isinstance(batch, dict):
        return batch.get("input_ids")
    return batch[0] if batch and isinstance(batch[0], torch.Tensor) else None


def check_batches_for_model(batches: Sequence[Batch], model: nn.Module) -> None:
    """Refuse, naming the calibration item, token ids a language model cannot take: float ids, ids outside
    its vocabulary, sequences longer than its ``max_position_embeddings``. Models without an input
    embedding (any other nn.Module) take whatever they take."""
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    if not isinstance(embeddings, nn.Embedding):
        return
    vocab = embeddings.num_embeddings
    max_positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    for i, batch in enumerate(batches):
        ids = _token_ids(batch)
        if ids is None:
            continue
        if ids.is_floating_point() or ids.is_complex():
            raise CalibrationError(f"calibration item {i}: token ids are {ids.dtype}; give integer token ids "
                                   f"(e.g. tokenizer(text).input_ids)")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise CalibrationError(f"calibration item {i}: token ids span [{int(ids.min())}, {int(ids.max())}], "
                                   f"outside the model's vocabulary of {vocab}; were they made with another tokenizer?")
        if isinstance(max_positions, int) and ids.shape[-1] > max_positions:
            raise CalibrationError(f"calibration item {i} has {ids.shape[-1]} tokens, more than the model's "
                                   f"max_position_embeddings {max_positions}; use seqlen <= {max_positions} or "
                                   f"shorter sequences")


def calibration_batches(
    calibration,
    tokenizer=None,
    seqlen: int = 2048,
    n_samples: Optional[int] = None,
    model: Optional[nn.Module] = None,
) -> List[Batch]:
    """Normalize local calibration data into model inputs (dicts of kwargs or tuples of args).

    calibration: a tensor of token ids (B, S) (one batch per row), a list of tensors / tuples / dicts,
        any iterable such as a DataLoader yielding those, or a list of strings (with ``tokenizer``: the
        concatenated text is cut into windows of ``seqlen`` tokens).
    n_samples: keep at most this many batches.
    model: when given, the batches are checked against it (check_batches_for_model).
    """
    if calibration is None:
        raise CalibrationError("no calibration data given")
    if isinstance(seqlen, bool) or not isinstance(seqlen, int) or seqlen < 1:
        raise CalibrationError(f"seqlen must be a positive number of tokens, got {seqlen!r}")
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1):
        raise CalibrationError(f"n_samples must be a positive int or None, got {n_samples!r}")
    if isinstance(calibration, str):
        calibration = [calibration]
    if isinstance(calibration, torch.Tensor):
        items: Iterable = calibration.unbind(0) if not calibration.is_floating_point() else [calibration]
    else:
        items = calibration
    items = list(items)
    if items and all(isinstance(t, str) for t in items):
        if tokenizer is None:
            raise CalibrationError("calibration texts need a tokenizer")
        batches = _texts_to_batches(items, tokenizer, seqlen, n_samples or 512)
    else:
        batches = [_as_batch(item) for item in items]
    if n_samples is not None:
        batches = batches[:n_samples]
    if not batches:
        raise CalibrationError("the calibration data is empty")
    if model is not None:
        check_batches_for_model(batches, model)
    return batches


# ---- block inputs ----------------------------------------------------------------------------------


def _map_tensors(obj, fn):
    """``fn`` applied to every tensor inside nested tuples / namedtuples / lists / dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_map_tensors(o, fn) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def move_to(obj, device):
    """Tensors inside nested tuples / lists / dicts moved to ``device`` (other objects unchanged)."""
    return _map_tensors(obj, lambda t: t.to(device))


@dataclass
class BlockInput:
    """The positional and keyword arguments one batch passes to a block (hidden states first)."""

    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]


class _StopForward(Exception):
    pass


# keyword arguments that would make a block grow or read a KV cache during calibration (transformers has
# renamed the cache argument more than once: past_key_value -> past_key_values -> cache)
_NO_CACHE = {"use_cache": False, "past_key_values": None, "past_key_value": None, "layer_past": None, "cache": None}


def is_kv_cache(value) -> bool:
    """Whether ``value`` is a key/value cache object (transformers' ``Cache`` classes or a look-alike):
    state that grows with every forward, so a block input holding one cannot be replayed."""
    return callable(getattr(value, "update", None)) and callable(getattr(value, "get_seq_length", None))


def replayable(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """A block's keyword arguments made safe to replay many times: caching switched off, every cache
    object (under whatever name a model passes it) dropped, tensors detached from any autograd graph."""
    def clean(key, value):
        if key in _NO_CACHE:
            return _NO_CACHE[key]
        return None if is_kv_cache(value) else detach_all(value)

    return {k: clean(k, v) for k, v in kwargs.items()}


def detach_all(obj):
    """Tensors inside nested tuples / lists / dicts detached (other objects unchanged)."""
    return _map_tensors(obj, torch.Tensor.detach)


def _model_inputs_without_cache(model: nn.Module, batch: "Batch") -> "Batch":
    """``batch`` with ``use_cache=False`` added when the model's forward takes it (a dict batch only)."""
    if isinstance(batch, dict) and "use_cache" not in batch and "use_cache" in inspect.signature(model.forward).parameters:
        return {**batch, "use_cache": False}
    return batch


def capture_block_inputs(
    model: nn.Module, first_block: nn.Module, batches: Sequence[Batch], offload_device: torch.device
) -> List[BlockInput]:
    """Run ``model`` on each batch up to ``first_block`` and keep what the block receives."""
    captured: List[BlockInput] = []

    def hook(module, args, kwargs):
        kwargs = replayable(kwargs)
        if not args and "hidden_states" in kwargs:
            args = (kwargs.pop("hidden_states"),)
        args = tuple(None if is_kv_cache(a) else detach_all(a) for a in args)
        captured.append(BlockInput(move_to(args, offload_device), move_to(kwargs, offload_device)))
        raise _StopForward

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            for batch in batches:
                batch = _model_inputs_without_cache(model, move_to(batch, device))
                try:
                    model(**batch) if isinstance(batch, dict) else model(*batch)
                except _StopForward:
                    continue
                raise CalibrationError("the model ran to the end without calling its first block; check block_names")
    finally:
        handle.remove()
    return captured


def blocks_are_chained(model: nn.Module, blocks: Sequence[nn.Module], batch: Batch) -> bool:
    """Whether each block's output is exactly the next block's input (true of transformers layers; not of
    a stack that adds a residual outside its blocks). Checked on one batch with the first two blocks."""
    if len(blocks) < 2:
        return True
    seen: Dict[str, torch.Tensor] = {}

    def keep_output(module, args, output):
        seen["out"] = block_output(output)

    def keep_input(module, args, kwargs):
        seen["in"] = args[0] if args else kwargs.get("hidden_states")
        raise _StopForward

    handles = [blocks[0].register_forward_hook(keep_output),
               blocks[1].register_forward_pre_hook(keep_input, with_kwargs=True)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            batch = _model_inputs_without_cache(model, move_to(batch, device))
            try:
                model(**batch) if isinstance(batch, dict) else model(*batch)
            except _StopForward:
                pass
    finally:
        for h in handles:
            h.remove()
    out, nxt = seen.get("out"), seen.get("in")
    return out is not None and nxt is not None and out.shape == nxt.shape and bool(torch.equal(out, nxt))


def block_output(out) -> torch.Tensor:
    """The hidden states a block returns (a tensor, or the first element of a tuple / ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if hasattr(out, "to_tuple"):
        return out.to_tuple()[0]
    raise TypeError(f"cannot find the hidden states in a block output of type {type(out).__name__}")


def run_block(block: nn.Module, inp: BlockInput, device: torch.device) -> torch.Tensor:
    """The block's output hidden states for one cached input, computed on ``device``."""
    return block_output(block(*move_to(inp.args, device), **move_to(inp.kwargs, device)))


def with_hidden_states(inp: BlockInput, hidden: torch.Tensor) -> BlockInput:
    """The same block input with its hidden states (first positional argument) replaced."""
    return BlockInput((hidden,) + tuple(inp.args[1:]), inp.kwargs)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a is b or (not isinstance(a, torch.Tensor) and a == b)


def stackable(inputs: Sequence[BlockInput]) -> bool:
    """True when the inputs differ only in their hidden states (shared masks, positions), so several of
    them can run as one forward with the hidden states concatenated along dim 0."""
    first = inputs[0]
    return all(
        inp.args[0].shape == first.args[0].shape and _same(inp.args[1:], first.args[1:]) and _same(inp.kwargs, first.kwargs)
        for inp in inputs[1:]
    )


def map_hidden_states(fn: Callable[[BlockInput], torch.Tensor], inputs: Sequence[BlockInput],
                      chunk: int = 32) -> List[torch.Tensor]:
    """``[fn(inp) for inp in inputs]``, each result (rows of inp, ...) on its input's device, computed
    ``chunk`` inputs per call when they are ``stackable`` (one batched forward instead of ``chunk``)."""
    outputs: List[torch.Tensor] = []
    for start in range(0, len(inputs), chunk):
        group = inputs[start:start + chunk]
        if len(group) > 1 and stackable(group):
            hidden = torch.cat([inp.args[0] for inp in group])
            out = fn(with_hidden_states(group[0], hidden))
            outputs += [o.to(inp.args[0].device) for o, inp in zip(out.split([i.args[0].shape[0] for i in group]), group)]
        else:
            outputs += [fn(inp).to(inp.args[0].device) for inp in group]
    return outputs
