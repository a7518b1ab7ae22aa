"""Op handlers for AffineQuantizedTensor, one short function per op, registered with @implements."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F

from torchao.qtensor.aqt import AffineQuantizedTensor, implements
from torchao.qtensor.layouts import get_layout, portable_layout
from torchao.qtensor.linear import quantized_linear
from torchao.qtensor.primitives import qparams_shape

aten = torch.ops.aten


def _is_aqt(t) -> bool:
    return isinstance(t, AffineQuantizedTensor)


def _linear_weight(w) -> AffineQuantizedTensor:
    """The (N, K) weight for a linear whose weight argument is ``w`` ((K, N) after .t() for mm/addmm)."""
    if not _is_aqt(w):
        raise NotImplementedError(f"quantized linear expects the weight to be an AffineQuantizedTensor, got {type(w)}")
    return w


# ---- linear -------------------------------------------------------------------------------------


@implements(F.linear, aten.linear.default)
def _linear(func, types, args, kwargs):
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    if _is_aqt(x):
        raise NotImplementedError("linear with a quantized *input* is not supported; quantize the weight instead")
    return quantized_linear(x, _linear_weight(w), bias)


@implements(aten.mm.default)
def _mm(func, types, args, kwargs):
    x, w_t = args
    return quantized_linear(x, _untranspose(w_t, func), None)


@implements(aten.addmm.default)
def _addmm(func, types, args, kwargs):
    bias, x, w_t = args[:3]
    if kwargs.get("beta", 1) != 1 or kwargs.get("alpha", 1) != 1:
        raise NotImplementedError("addmm with beta/alpha != 1 on a quantized weight is not supported")
    return quantized_linear(x, _untranspose(w_t, func), bias)


def _untranspose(w_t, func) -> AffineQuantizedTensor:
    if _is_aqt(w_t) and w_t.spec.transposed:
        return _transpose(w_t)
    raise NotImplementedError(
        f"{func} on an AffineQuantizedTensor needs it as the transposed weight of a linear "
        f"(x @ w.t()); got {'a quantized input' if not _is_aqt(w_t) else 'an untransposed weight'}"
    )


# ---- embedding and convolution ----------------------------------------------------------------------


@implements(F.embedding)
def _embedding(func, types, args, kwargs):
    ids, w = args[0], args[1]
    if not _is_aqt(w) or _is_aqt(ids):
        raise NotImplementedError("embedding needs integer ids and a quantized weight")
    max_norm = args[3] if len(args) > 3 else kwargs.get("max_norm")
    if max_norm is not None:
        raise NotImplementedError("embedding with max_norm renormalizes the weight in place; not on a quantized weight")
    flat = ids.reshape(-1)
    s = w.spec
    if w.quant_layout.rows_gatherable and s.block_size[0] == 1 and not s.transposed:
        # gather the packed rows, then dequantize only those
        rows = w.with_tensors(lambda t: t.index_select(0, flat), shape=(flat.numel(),) + tuple(s.shape[1:])).dequantize()
    else:
        rows = w.dequantize().index_select(0, flat)
    return rows.reshape(*ids.shape, *s.shape[1:])


@implements(F.conv1d, F.conv2d, F.conv3d)
def _conv(func, types, args, kwargs):
    x, w = args[0], args[1]
    if _is_aqt(x) or not _is_aqt(w):
        raise NotImplementedError(f"{func.__name__} needs a float input and a quantized weight")
    x_dtype = x.dtype
    return func(x, w.dequantize(x_dtype), *args[2:], **kwargs)


# ---- structure-preserving ops --------------------------------------------------------------------


@implements(aten.detach.default, aten.alias.default)
def _detach(func, types, args, kwargs):
    out = args[0].with_tensors(func)
    if hasattr(args[0], "_slice_of"):  # an alias of a repacked slice writes through to the same tensor
        out._slice_of = args[0]._slice_of
    return out


@implements(aten.clone.default)
def _clone(func, types, args, kwargs):
    return args[0].with_tensors(lambda t: t.clone())


def _transpose(w: AffineQuantizedTensor) -> AffineQuantizedTensor:
    if w.dim() != 2:
        raise NotImplementedError(f"transpose of a quantized tensor needs 2 dims, got shape {tuple(w.shape)}")
    return w.with_tensors(lambda t: t, shape=tuple(reversed(w.spec.shape)), transposed=not w.spec.transposed)


@implements(aten.t.default)
def _t(func, types, args, kwargs):
    return _transpose(args[0])


@implements(aten.transpose.int)
def _transpose_int(func, types, args, kwargs):
    w, d0, d1 = args
    if w.dim() == 2 and {d0 % 2, d1 % 2} == {0, 1}:
        return _transpose(w)
    if d0 % w.dim() == d1 % w.dim():
        return w
    raise NotImplementedError(f"transpose({d0}, {d1}) of a quantized tensor of shape {tuple(w.shape)}")


@implements(aten._to_copy.default)
def _to_copy(func, types, args, kwargs):
    w: AffineQuantizedTensor = args[0]
    device = torch.device(kwargs["device"]) if kwargs.get("device") is not None else w.device
    dtype = kwargs.get("dtype") or w.dtype
    if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise NotImplementedError(f"cannot convert an AffineQuantizedTensor to {dtype}; dequantize() it first")
    if device != w.device and get_layout(w.spec.layout).unsupported_reason(w.spec, device):
        w = w.relayout(portable_layout(w.spec, device))
    old_dtype = w.dtype

    def move(t):
        cast = dtype if (t.is_floating_point() and t.dtype == old_dtype and dtype != old_dtype) else None
        return t.to(device=device, dtype=cast)

    return w.with_tensors(move, dtype=dtype)


@implements(aten.copy_.default)
def _copy_(func, types, args, kwargs):
    """Whole-tensor copy of a quantized tensor of the same format (the layout may differ); into a slice that
    had to be repacked (so is a copy), the values are also written into the tensor it was sliced from, the way
    ``torch.distributed.checkpoint`` fills a tensor piece by piece when it reshards."""
    dst, src = args[0], args[1]
    if not (_is_aqt(dst) and _is_aqt(src)):
        raise NotImplementedError(
            "copy_ between a quantized and a float tensor is not supported: quantize the source with the same "
            "config first (e.g. load a state_dict saved from a quantized model)"
        )
    same = dataclasses.replace(src.spec, layout=dst.spec.layout, layout_extra=dst.spec.layout_extra)
    if same != dst.spec:
        raise ValueError(f"copy_: quantized source {src!r} does not match destination {dst!r}")
    if src.spec.layout != dst.spec.layout or src.spec.layout_extra != dst.spec.layout_extra:
        src = src.relayout(dst.spec.layout, dst.device)
    src_tensors = src.inner_tensors()
    if set(src_tensors) != set(dst.inner_tensors()):
        raise ValueError(f"copy_: inner tensors {sorted(src_tensors)} do not match {sorted(dst.inner_tensors())}")
    if hasattr(dst, "_slice_of"):
        _write_into_whole(*dst._slice_of, src)
    else:
        dst._shared_block_pieces = None  # a whole copy: no block is partly written any more
    for name, t in dst.inner_tensors().items():
        t.copy_(src_tensors[name].reshape(t.shape))  # qparams of a slice may be kept with a unit dim
    return dst


def _write_into_whole(whole: AffineQuantizedTensor, dim: int, start: int, end: int, part: AffineQuantizedTensor):
    """Write ``part`` (a quantized tensor of ``whole``'s format) into ``whole[start:end]`` along ``dim`` by
    repacking ``whole``. A quantization block that spans all of ``dim`` (one scale per row) is shared with the
    rest of ``whole``: its scale becomes ``part``'s, and every other piece later written into it must carry
    the same scale (pieces quantized separately cannot share one block: a ValueError says so)."""
    int_data, scale, zero_point = (None if t is None else t.clone() for t in whole.get_plain())
    part_int, part_scale, part_zero = part.get_plain()
    block, size = whole.spec.block_size[dim], whole.shape[dim]
    shared = block == size and end - start < size
    pieces = _shared_block_pieces(whole, dim, start, end, part_scale, part_zero) if shared else None
    int_data.narrow(dim, start, end - start).copy_(part_int)
    first, count = (0, 1) if shared else (start // block, -(-(end - start) // block))
    for whole_q, part_q in ((scale, part_scale), (zero_point, part_zero)):
        if whole_q is not None:
            whole_q = _on_block_grid(whole, whole_q)
            whole_q.narrow(dim, first, count).copy_(part_q.reshape(whole_q.narrow(dim, first, count).shape))
    _copy_(aten.copy_.default, (), (whole, _rebuild(whole, int_data, scale, zero_point, whole.spec.block_size)), {})
    whole._shared_block_pieces = pieces


def _shared_block_pieces(whole, dim, start, end, scale, zero_point):
    """The record of the pieces written into a block shared along ``dim`` once ``[start:end]`` is written
    (None once they cover all of it); a piece whose qparams differ from those already written is refused."""
    written = getattr(whole, "_shared_block_pieces", None)
    if written is not None and written[0] == dim and not (
            torch.equal(written[1], scale) and (zero_point is None or torch.equal(written[2], zero_point))):
        raise ValueError(
            f"copy_ into [{start}:{end}] of dim {dim} of a quantized tensor of shape {tuple(whole.shape)} with "
            f"block_size {whole.spec.block_size}: this piece was quantized with other scales than a piece already "
            "written, and one block (one scale per row) cannot hold both; quantize the whole tensor in one piece, "
            "or load into a model quantized with a block size that matches the pieces"
        )
    covered = (written[3] if written is not None and written[0] == dim else set()) | set(range(start, end))
    return None if len(covered) == whole.shape[dim] else (dim, scale, zero_point, covered)


# ---- views and slices (through the plain integers, so every layout supports them) ------------------


def _on_block_grid(w: AffineQuantizedTensor, qparams: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``w``'s scale or zero point shaped as its grid of blocks (one entry per block along every dim)."""
    return None if qparams is None else qparams.reshape([n // b for n, b in zip(w.shape, w.spec.block_size)])


def _rebuild(w: AffineQuantizedTensor, int_data, scale, zero_point, block_size) -> AffineQuantizedTensor:
    """``w``'s format for new plain tensors (made contiguous: a slice of columns is strided, the kernels
    read rows densely)."""
    spec = dataclasses.replace(w.spec, shape=tuple(int_data.shape), block_size=tuple(block_size), transposed=False)
    return AffineQuantizedTensor.from_plain(int_data.contiguous(), scale.contiguous(),
                                            None if zero_point is None else zero_point.contiguous(), spec)


@implements(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def _view(func, types, args, kwargs):
    w, new_shape = args[0], list(args[1])
    if -1 in new_shape:
        new_shape[new_shape.index(-1)] = w.numel() // -math.prod(new_shape)
    if tuple(new_shape) == tuple(w.shape):
        return w.with_tensors(lambda t: t)
    s = w.spec
    if s.transposed or new_shape[-1:] != list(w.shape[-1:]) or any(b != 1 for b in s.block_size[:-1]):
        raise NotImplementedError(
            f"{func}: a quantized tensor of shape {tuple(w.shape)} with block_size {s.block_size} can only be "
            f"reshaped in its leading dims (last dim kept, blocks of 1 row); got {tuple(new_shape)}"
        )
    int_data, scale, zero_point = w.get_plain()
    block = (1,) * (len(new_shape) - 1) + (s.block_size[-1],)
    qshape = qparams_shape(block, new_shape)
    return _rebuild(
        w, int_data.reshape(new_shape), scale.reshape(qshape),
        None if zero_point is None else zero_point.reshape(qshape), block,
    )


@implements(aten.slice.Tensor)
def _slice(func, types, args, kwargs):
    w: AffineQuantizedTensor = args[0]
    dim, start, end, step = (list(args[1:]) + [0, None, None, 1][len(args) - 1:])[:4]
    s = w.spec
    dim = dim % w.dim()
    size = w.shape[dim]
    start = 0 if start is None else max(0, min(size, start if start >= 0 else start + size))
    end = size if end is None else max(0, min(size, end if end >= 0 else end + size))
    if start == 0 and end == size and step == 1:
        return w.with_tensors(lambda t: t)
    if s.transposed:
        return _transpose(_slice(func, types, (_transpose(w), 1 - dim, start, end, step), {}))
    block = s.block_size[dim]
    # a block spanning the whole dim (per-channel scales) holds for any part of it
    aligned = block == size or (start % block == 0 and (end % block == 0 or end == size))
    if step != 1 or not aligned:
        raise NotImplementedError(
            f"slice of dim {dim} [{start}:{end}:{step}] does not align with block_size {s.block_size} "
            f"of a quantized tensor of shape {tuple(w.shape)}"
        )
    int_data, scale, zero_point = w.get_plain()

    def slice_qparams(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else _on_block_grid(w, t).narrow(dim, start // block, -(-(end - start) // block))

    new_block = list(s.block_size)
    new_block[dim] = min(block, end - start)
    out = _rebuild(w, int_data.narrow(dim, start, end - start), slice_qparams(scale),
                   slice_qparams(zero_point), tuple(new_block))
    if not torch.compiler.is_compiling() and not _shares_storage(out, w):
        out._slice_of = (w, dim, start, end)  # a copy: writing into it also repacks ``w`` (see _copy_)
    return out


def _shares_storage(part: AffineQuantizedTensor, whole: AffineQuantizedTensor) -> bool:
    """Whether every inner tensor of ``part`` is a view into one of ``whole`` (a slice that writes through)."""
    try:
        pointers = {t.untyped_storage().data_ptr() for t in whole.inner_tensors().values()}
        return all(t.untyped_storage().data_ptr() in pointers for t in part.inner_tensors().values())
    except (RuntimeError, NotImplementedError):  # tensors without storage
        return True


# ---- split and cat (tensor parallelism shards weights with these) ---------------------------------


def _pieces(size: int, dim_size: int):
    return [(start, min(start + size, dim_size)) for start in range(0, dim_size, size)]


@implements(aten.split.Tensor)
def _split(func, types, args, kwargs):
    """Equal pieces of ``split_size`` along ``dim`` (the last one shorter), each a quantized tensor; a cut
    inside a quantization block is an error naming it (see _slice)."""
    w, size = args[0], args[1]
    dim = (args[2] if len(args) > 2 else kwargs.get("dim", 0)) % w.dim()
    return [_slice(aten.slice.Tensor, types, (w, dim, start, end), {}) for start, end in _pieces(size, w.shape[dim])]


@implements(aten.split_with_sizes.default)
def _split_with_sizes(func, types, args, kwargs):
    w, sizes = args[0], list(args[1])
    dim = (args[2] if len(args) > 2 else kwargs.get("dim", 0)) % w.dim()
    if sum(sizes) != w.shape[dim]:
        raise ValueError(f"split_with_sizes: sizes {sizes} do not add up to {w.shape[dim]} (dim {dim} of {tuple(w.shape)})")
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    return [_slice(aten.slice.Tensor, types, (w, dim, start, end), {}) for start, end in zip(bounds, bounds[1:])]


@implements(aten.cat.default)
def _cat(func, types, args, kwargs):
    """Quantized tensors of one format joined along ``dim`` (shards back into one): the integers and the
    per-block scales / zero points are concatenated; the result is stored in the first tensor's layout."""
    parts, dim = list(args[0]), args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not all(_is_aqt(p) for p in parts):
        raise NotImplementedError("cat of quantized and float tensors: dequantize() the quantized ones first")
    first = parts[0]
    dim %= first.dim()
    specs = [dataclasses.replace(p.spec, shape=(), layout_extra=(), layout="") for p in parts]
    full_extent = all(p.spec.block_size[dim] == p.shape[dim] for p in parts)
    if any(s != specs[0] for s in specs[1:]) or any(p.spec.transposed for p in parts) or (
            full_extent and len({p.shape[dim] for p in parts}) > 1):
        raise NotImplementedError(f"cat along dim {dim}: the quantized tensors differ in format or block size "
                                  f"({[p.spec for p in parts]})")
    plains = [p.get_plain() for p in parts]
    int_data = torch.cat([ints for ints, _, _ in plains], dim)
    scale = torch.cat([_on_block_grid(p, s) for p, (_, s, _) in zip(parts, plains)], dim)
    zero = None if plains[0][2] is None else torch.cat([_on_block_grid(p, z) for p, (_, _, z) in zip(parts, plains)], dim)
    return _rebuild(first, int_data, scale, zero, first.spec.block_size)


@implements(aten.empty_like.default)
def _empty_like(func, types, args, kwargs):
    """An uninitialized quantized tensor of the same format (a buffer that a collective fills)."""
    return args[0].with_tensors(torch.empty_like)


def _inner(structure, name: str):
    """``structure`` (nested lists of tensors and other arguments) with each quantized tensor replaced by
    its inner tensor ``name``."""
    if _is_aqt(structure):
        return getattr(structure, name)
    if isinstance(structure, (list, tuple)):
        return type(structure)(_inner(s, name) for s in structure)
    return structure


def _first_aqt(structure) -> Optional[AffineQuantizedTensor]:
    if _is_aqt(structure):
        return structure
    if isinstance(structure, (list, tuple)):
        return next((found for s in structure if (found := _first_aqt(s)) is not None), None)
    return None


def _collective(func, types, args, kwargs):
    """A c10d collective (broadcast, scatter, all-gather) on quantized tensors of one format: the same
    collective on each inner tensor in turn (every rank holds the same inner tensor names), waited for."""
    work = None
    for name in _first_aqt(args).inner_tensors():
        _, work = func(*_inner(args, name), **kwargs)
        work.wait()
    return args[0], work


def _functional_all_gather(func, types, args, kwargs):
    """``_c10d_functional.all_gather_into_tensor`` (DTensor's Shard -> Replicate, ``full_tensor()``): the
    plain integers and the per-block scales / zero points of every rank joined along dim 0, in this tensor's
    layout (each rank's packed bytes could not simply be concatenated), waited for at once."""
    w, group_size, group_name = args[0], args[1], args[2]
    int_data, scale, zero_point = w.get_plain()

    def gathered(t):
        if t is None:
            return None
        out = torch.ops._c10d_functional.all_gather_into_tensor(t.contiguous(), group_size, group_name)
        return torch.ops._c10d_functional.wait_tensor(out)

    return _rebuild(w, gathered(int_data), gathered(_on_block_grid(w, scale)),
                    gathered(_on_block_grid(w, zero_point)), w.spec.block_size)


def _functional_wait(func, types, args, kwargs):
    """wait_tensor / _wrap_tensor_autograd of a gathered quantized tensor: the gather above has already
    waited, and the tensor is inference-only: nothing to do."""
    return args[0]


if torch.distributed.is_available():
    import torch.distributed._functional_collectives  # noqa: F401  (defines _c10d_functional._wrap_tensor_autograd)

    implements(*(getattr(torch.ops.c10d, op).default for op in ("broadcast_", "scatter_", "allgather_")))(_collective)
    implements(torch.ops._c10d_functional.all_gather_into_tensor.default)(_functional_all_gather)
    implements(torch.ops._c10d_functional.wait_tensor.default,
               torch.ops._c10d_functional._wrap_tensor_autograd.default)(_functional_wait)


@implements(aten.is_pinned.default)
def _is_pinned(func, types, args, kwargs):
    return all(t.is_pinned() for t in args[0].inner_tensors().values())
