"""Dense packing of b-bit codes into int32 words, the packing GPTQ, AutoRound and compressed-tensors share.

Along the packed dimension, code i occupies bits [i*b, (i+1)*b) of one little-endian bit stream, cut into
32-bit words: 32 codes fill exactly b words, and a code may straddle two words (3, 5, 6, 7 bits). For
b in {2, 4, 8} this is the usual "32/b codes per word, code j at bit j*b".
"""

from __future__ import annotations

import math

import torch

__all__ = ["pack_int32", "unpack_int32", "packed_length"]

_WORD = 32


def packed_length(length: int, bits: int) -> int:
    """Words that hold ``length`` codes of ``bits`` bits."""
    return math.ceil(length * bits / _WORD)


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")


def pack_int32(codes: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Pack the unsigned codes (any integer dtype, values in [0, 2^bits)) of a 2-D tensor along ``dim``.

    Returns int32 with ``packed_length(codes.shape[dim], bits)`` words along ``dim``."""
    _check_bits(bits)
    if codes.dim() != 2:
        raise ValueError(f"pack_int32 packs 2-D tensors, got shape {tuple(codes.shape)}")
    values = codes.to(torch.int64)
    if values.numel() and (values.min() < 0 or values.max() >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for {bits} bits, got [{values.min()}, {values.max()}]")
    rows = values.movedim(dim, -1)
    n_rows, length = rows.shape
    chunks = math.ceil(length / _WORD)
    rows = torch.nn.functional.pad(rows, (0, chunks * _WORD - length)).reshape(n_rows, chunks, _WORD)
    start = torch.arange(_WORD, device=codes.device) * bits
    word, shift = start // _WORD, start % _WORD
    out = torch.zeros(n_rows, chunks, bits, dtype=torch.int64, device=codes.device)
    out.scatter_add_(2, word.expand(n_rows, chunks, _WORD), rows << shift)
    spill = shift + bits > _WORD  # the high bits of a straddling code go to the next word
    if bool(spill.any()):
        out.scatter_add_(2, (word[spill] + 1).expand(n_rows, chunks, int(spill.sum())),
                         rows[..., spill] >> (_WORD - shift[spill]))
    out = out & 0xFFFFFFFF
    out = torch.where(out >= 2**31, out - 2**32, out).reshape(n_rows, chunks * bits)[:, :packed_length(length, bits)]
    return out.to(torch.int32).movedim(-1, dim).contiguous()


def unpack_int32(packed: torch.Tensor, bits: int, length: int, dim: int) -> torch.Tensor:
    """The ``length`` unsigned codes (int32) along ``dim`` of a tensor packed by ``pack_int32``."""
    _check_bits(bits)
    if packed.dtype != torch.int32 or packed.dim() != 2:
        raise ValueError(f"expected a 2-D int32 tensor of packed codes, got {packed.dtype} {tuple(packed.shape)}")
    words = packed.movedim(dim, -1).to(torch.int64) & 0xFFFFFFFF
    n_rows, n_words = words.shape
    if n_words != packed_length(length, bits):
        raise ValueError(f"{length} codes of {bits} bits take {packed_length(length, bits)} int32 words, "
                         f"got {n_words}")
    chunks = math.ceil(length / _WORD)
    words = torch.nn.functional.pad(words, (0, chunks * bits - n_words)).reshape(n_rows, chunks, bits)
    start = torch.arange(_WORD, device=packed.device) * bits
    word, shift = start // _WORD, start % _WORD
    codes = words[..., word] >> shift
    spill = shift + bits > _WORD
    if bool(spill.any()):
        codes[..., spill] |= words[..., word[spill] + 1] << (_WORD - shift[spill])
    codes = (codes & (2**bits - 1)).reshape(n_rows, chunks * _WORD)[:, :length]
    return codes.to(torch.int32).movedim(-1, dim).contiguous()
