"""Lossless compressors on uint8 storage, composable: ``Chain(BitPack(3), ...)``.

A compressor maps a uint8 tensor (..., L) to a uint8 tensor (..., L') and back exactly; ``decompress``
needs the original length L. ``BitPack(bits)`` stores values < 2**bits densely: L * bits bits rounded up
to whole bytes per row, element i at bit offset i * bits, least significant bit first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple, Type

import torch

__all__ = ["Compressor", "BitPack", "Chain", "COMPRESSORS", "packed_length"]


class Compressor:
    """compress: (..., L) uint8 -> (..., L') uint8; decompress(packed, L) -> (..., L) uint8, exactly."""

    def compress(self, values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decompress(self, packed: torch.Tensor, length: int) -> torch.Tensor:
        raise NotImplementedError


def packed_length(length: int, bits: int) -> int:
    """Bytes per row that BitPack(bits) uses for ``length`` values."""
    return -(-length * bits // 8)


@dataclass(frozen=True)
class BitPack(Compressor):
    """Dense packing of values in [0, 2**bits) for bits in 1..8."""

    bits: int

    def __post_init__(self):
        if not 1 <= self.bits <= 8:
            raise ValueError(f"BitPack needs 1..8 bits, got {self.bits}")

    def compress(self, values: torch.Tensor) -> torch.Tensor:
        if values.dtype != torch.uint8:
            raise TypeError(f"BitPack compresses uint8 values, got {values.dtype}")
        if values.numel() and int(values.max()) >= 2**self.bits:
            raise ValueError(f"value {int(values.max())} does not fit in {self.bits} bits")
        *lead, length = values.shape
        shifts = torch.arange(self.bits, dtype=torch.uint8, device=values.device)
        bits = ((values.unsqueeze(-1) >> shifts) & 1).reshape(*lead, length * self.bits)
        nbytes = packed_length(length, self.bits)
        bits = torch.nn.functional.pad(bits, (0, nbytes * 8 - length * self.bits)).reshape(*lead, nbytes, 8)
        weights = (1 << torch.arange(8, dtype=torch.int32, device=values.device))
        return (bits.to(torch.int32) * weights).sum(-1).to(torch.uint8)

    def decompress(self, packed: torch.Tensor, length: int) -> torch.Tensor:
        *lead, nbytes = packed.shape
        if nbytes != packed_length(length, self.bits):
            raise ValueError(f"{nbytes} bytes per row cannot hold {length} values of {self.bits} bits")
        shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
        bits = ((packed.unsqueeze(-1) >> shifts) & 1).reshape(*lead, nbytes * 8)[..., : length * self.bits]
        weights = (1 << torch.arange(self.bits, dtype=torch.int32, device=packed.device))
        return (bits.reshape(*lead, length, self.bits).to(torch.int32) * weights).sum(-1).to(torch.uint8)


@dataclass(frozen=True)
class Chain(Compressor):
    """Apply compressors in order; decompress in reverse, with each step's input length recomputed."""

    steps: Tuple[Compressor, ...]

    def compress(self, values):
        for step in self.steps:
            values = step.compress(values)
        return values

    def decompress(self, packed, length):
        lengths = [length]
        for step in self.steps[:-1]:  # lengths seen by the later steps, recomputed from the first
            lengths.append(_output_length(step, lengths[-1]))
        for step, n in zip(reversed(self.steps), reversed(lengths)):
            packed = step.decompress(packed, n)
        return packed


def _output_length(step: Compressor, length: int) -> int:
    if isinstance(step, BitPack):
        return packed_length(length, step.bits)
    raise TypeError(f"cannot predict the output length of {step!r} in a Chain")


#: name -> compressor class, for users who register their own
COMPRESSORS: Dict[str, Type[Compressor]] = {"bitpack": BitPack, "chain": Chain}
