"""PyTorch's CPU int4 format (aten._weight_int4pack_mm_for_cpu): fast weight-only int4 on CPU.

The packed bytes are machine-specific (channel-interleaved for the CPU's vector width), so this
layout is CPU-only; checkpoints and device moves go through the plain values (see kernels/cpu.py).
The kernel computes W = (q - 8) * s + z per group; every integer range of at most 16 levels maps onto
it exactly: q' = q - quant_min and z = (8 + quant_min - zero_point) * s (INT domain), likewise for
NONE / FLOAT zero points. The original scale and zero point are kept too, so unpack is exact.
"""

from __future__ import annotations

import torch

from torchao.kernels.cpu import (
    INT4_CPU_N_MULTIPLE,
    int4_cpu_kernel_group_size,
    int4_cpu_pack,
    int4_cpu_unpack,
    weight_only_compute_dtype,
)
from torchao.qtensor.layouts.base import Layout, register_layout
from torchao.qtensor.layouts.int4_packed import int4_weight_reason, offsets_from_min, values_from_offsets
from torchao.qtensor.primitives import ZeroPointDomain


def _kernel_scales_and_zeros(scale, zero_point, spec, kernel_group):
    """(K // kernel_group, N, 2) tensor of (s, z) with W = (q' - 8) * s + z, q' = q - quant_min."""
    n, k = spec.stored_shape
    groups = k // spec.group_size
    s = scale.reshape(n, groups).to(torch.float32)
    if spec.zero_point_domain == ZeroPointDomain.INT:
        z = (8 + spec.quant_min - zero_point.reshape(n, groups).to(torch.float32)) * s
    elif spec.zero_point_domain == ZeroPointDomain.NONE:
        z = (8 + spec.quant_min) * s
    else:
        z = (8 + spec.quant_min - spec.mid) * s + zero_point.reshape(n, groups).to(torch.float32)
    repeat = spec.group_size // kernel_group
    sz = torch.stack([s, z], dim=-1).repeat_interleave(repeat, dim=1)  # (N, K // kernel_group, 2)
    return sz.transpose(0, 1).contiguous().to(weight_only_compute_dtype(spec.dtype))


def _drop_zero_zeros(scales_and_zeros, spec):
    """Scales only, (K // kernel_group, N, 1), for a weight with int8 activations whose zeros are 0 by its
    format: no zero point and range [-8, 7] (z = (8 + quant_min) * s); decided by the spec, not the values."""
    if spec.act_quant is None or spec.zero_point_domain != ZeroPointDomain.NONE or spec.quant_min != -8:
        return scales_and_zeros
    return scales_and_zeros[..., :1].contiguous()


@register_layout
class Int4CPULayout(Layout):
    """packed: aten CPU int4 bytes (N, K // 2) uint8; scales_and_zeros: (K // kernel_group, N, 2) in
    the kernel's compute dtype, or (K // kernel_group, N, 1) scales for int8-activation weights whose
    zeros are all 0 (what our int8 x int4 kernel reads: 4.5 bits a weight at group 32 instead of 5);
    scale, zero_point: the original qparams."""

    name = "int4_cpu"
    tensor_names = ("packed", "scales_and_zeros", "scale", "zero_point")
    device_types = ("cpu",)
    portable = "int4_packed"  # the packing depends on the CPU's vector width
    preferred_on = ("cpu",)
    linear_kernels = ("cpu_int4_weight_only", "cpu_int8_dynamic_int4")
    matmul_tensor_names = ("packed", "scales_and_zeros")

    @classmethod
    def unsupported_reason(cls, spec, device):
        reason = super().unsupported_reason(spec, device) or int4_weight_reason(spec)
        if reason:
            return reason
        n, _ = spec.stored_shape
        if n % INT4_CPU_N_MULTIPLE:
            return f"the CPU int4 kernel needs out_features divisible by {INT4_CPU_N_MULTIPLE}, got N={n}"
        if int4_cpu_kernel_group_size(spec.group_size) is None:
            return f"the CPU int4 kernel needs a group size that is a multiple of 32, got {spec.group_size}"
        return None

    @classmethod
    def pack(cls, int_data, scale, zero_point, spec):
        kernel_group = int4_cpu_kernel_group_size(spec.group_size)
        scales_and_zeros = _drop_zero_zeros(_kernel_scales_and_zeros(scale, zero_point, spec, kernel_group), spec)
        tensors = {
            "packed": int4_cpu_pack(offsets_from_min(int_data, spec)),
            "scales_and_zeros": scales_and_zeros,
            "scale": scale,
            "zero_point": zero_point,
        }
        # in the spec too, so that compiled graphs (and their caches, keyed by the spec) tell the two forms apart
        scales_only = scales_and_zeros.shape[-1] == 1
        return tensors, (("kernel_group_size", kernel_group), ("scales_only", scales_only))

    @classmethod
    def unpack(cls, tensors, spec):
        n, k = spec.stored_shape
        offsets = int4_cpu_unpack(tensors["packed"], n, k)
        return values_from_offsets(offsets, spec), tensors["scale"], tensors.get("zero_point")
