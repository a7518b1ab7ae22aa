"""Dense sub-byte storage: values of 1..7 bits packed along the last dim with the BitPack compressor,
so the tensor takes bits/8 bytes per element in memory (plus scales). Any rank, any block_size."""

from __future__ import annotations

from torchao.qtensor.compressors import BitPack
from torchao.qtensor.layouts.base import Layout, register_layout
from torchao.qtensor.layouts.int4_packed import offsets_from_min, values_from_offsets


@register_layout
class BitPackedLayout(Layout):
    """packed: (..., ceil(K * bits / 8)) uint8 of offsets q - quant_min; scale / zero_point as in plain."""

    name = "bitpacked"
    rows_gatherable = True
    tensor_names = ("packed", "scale", "zero_point")

    @classmethod
    def unsupported_reason(cls, spec, device):
        if spec.bits > 7:
            return f"packs 1..7-bit values, got a range of {spec.bits} bits"
        return super().unsupported_reason(spec, device)

    @classmethod
    def pack(cls, int_data, scale, zero_point, spec):
        return {"packed": BitPack(spec.bits).compress(offsets_from_min(int_data, spec)), "scale": scale,
                "zero_point": zero_point}, ()

    @classmethod
    def unpack(cls, tensors, spec):
        offsets = BitPack(spec.bits).decompress(tensors["packed"], spec.stored_shape[-1])
        return values_from_offsets(offsets, spec), tensors["scale"], tensors.get("zero_point")
