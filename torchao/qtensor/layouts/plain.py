"""The plain layout: one integer per byte (or wider), any rank, any block_size."""

from __future__ import annotations

from torchao.qtensor.layouts.base import Layout, register_layout


@register_layout
class PlainLayout(Layout):
    """int_data: stored shape, storage dtype of the target (int8 / uint8 / int16 / int32);
    scale, zero_point: one element per block (zero_point absent for ZeroPointDomain.NONE)."""

    name = "plain"
    rows_gatherable = True
    tensor_names = ("int_data", "scale", "zero_point")
    linear_kernels = ("cpu_int8_weight_only", "triton_int8_weight_only", "cpu_int8_dynamic", "triton_int8_dynamic")

    @classmethod
    def pack(cls, int_data, scale, zero_point, spec):
        return {"int_data": int_data, "scale": scale, "zero_point": zero_point}, ()

    @classmethod
    def unpack(cls, tensors, spec):
        return tensors["int_data"], tensors["scale"], tensors.get("zero_point")
