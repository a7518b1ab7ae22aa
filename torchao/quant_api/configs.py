"""Weight quantization configs: callables that map a float weight to an AffineQuantizedTensor.

Each config is an apply function (``config(weight) -> AffineQuantizedTensor``) that can also say in
advance why it cannot serve a weight (``config.unsupported_reason(weight)``), so that ``quantize_``
can skip or refuse a layer before touching the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from torchao.qtensor import AffineQuantizedTensor, MappingType, ZeroPointDomain, get_layout
from torchao.qtensor.layouts import QuantSpec, best_layout, layout_name
from torchao.qtensor.primitives import FLOAT8_DTYPES
from torchao.quant_api.hqq import hqq_quantize
from torchao.quant_api.weight_format import IntFormat, fastest_layout, quantized_weight

__all__ = [
    "AOBaseConfig",
    "UnsupportedWeight",
    "WeightConfig",
    "Int8WeightOnlyConfig",
    "Int4WeightOnlyConfig",
    "Int8DynamicActivationInt8WeightConfig",
    "Int8DynamicActivationInt4WeightConfig",
    "IntxWeightOnlyConfig",
    "intx_weight_only",
    "int8_weight_only",
    "int4_weight_only",
    "int8_dynamic_activation_int8_weight",
    "int8_dynamic_activation_int4_weight",
    "get_apply_int8wo_quant",
    "get_apply_int4wo_quant",
    "get_apply_int8dyn_quant",
    "PerRow",
    "PerTensor",
    "Float8WeightOnlyConfig",
    "Float8DynamicActivationFloat8WeightConfig",
    "float8_weight_only",
    "float8_dynamic_activation_float8_weight",
]

#: the smallest scale a group may get, by weight dtype: the smallest normal number, so that weights of any
#: representable magnitude (1e-8, 1e-30) keep their values; float16 keeps float32's eps (a float16 scale
#: far below its smallest normal loses its precision)
_SCALE_FLOORS = {torch.float16: torch.finfo(torch.float32).eps}


def scale_floor(dtype: torch.dtype) -> float:
    """The scale floor (``eps``) the configs use for weights of ``dtype``."""
    return _SCALE_FLOORS.get(dtype, torch.finfo(torch.float32).tiny)


class UnsupportedWeight(ValueError):
    """A config cannot serve this weight (shape, dtype); the layer stays in float."""


class AOBaseConfig:
    """Base of every config ``quantize_`` takes (RTN configs, GPTQ, AutoRound, FqnToConfig): configs are
    data; config_to_dict / config_from_dict (torchao.quant_api.config_serialization) turn the serializable
    ones into JSON and back."""


class WeightConfig(AOBaseConfig):
    """Base of the configs: ``__call__(weight)`` quantizes, ``unsupported_reason(weight)`` pre-checks."""

    def unsupported_reason(self, weight: torch.Tensor) -> Optional[str]:
        if isinstance(weight, AffineQuantizedTensor):
            return "already quantized"
        if weight.dim() != 2:
            return f"needs a 2-D weight, got shape {tuple(weight.shape)}"
        if not weight.is_floating_point():
            return f"needs a float weight, got {weight.dtype}"
        return None

    def quantize(self, weight: torch.Tensor) -> AffineQuantizedTensor:
        raise NotImplementedError

    def __call__(self, weight: torch.Tensor) -> AffineQuantizedTensor:
        reason = self.unsupported_reason(weight)
        if reason:
            raise UnsupportedWeight(f"{self!r} cannot quantize a weight of shape {tuple(weight.shape)}: {reason}")
        return self.quantize(weight.detach())


def _check_group_size(config, per_channel_ok: bool = False) -> None:
    """Refuse a group size that is not a positive int at construction (None / -1 mean one group per row
    where ``per_channel_ok``)."""
    value = config.group_size
    if per_channel_ok and value in (None, -1):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        hint = " (or None / -1 for one group per row)" if per_channel_ok else ""
        raise ValueError(f"{type(config).__name__}: group_size must be a positive int{hint}, got {value!r}")


def _group_reason(weight: torch.Tensor, group_size: int) -> Optional[str]:
    k = weight.shape[-1]
    if group_size <= 0:
        return f"group_size must be positive, got {group_size}"
    if k % group_size:
        return f"in_features {k} is not divisible by group_size {group_size}"
    return None


def _int4_spec(weight, group_size, target_dtype, qmin, qmax, domain) -> QuantSpec:
    """The spec a 4-bit weight will have, to ask layouts whether they can hold it."""
    return QuantSpec(tuple(weight.shape), weight.dtype, (1, group_size), target_dtype, qmin, qmax, domain, "int4_packed")


@dataclass(frozen=True)
class Int8WeightOnlyConfig(WeightConfig):
    """int8 weights, symmetric per output channel (``group_size=None``) or per group of ``group_size``
    input features; activations stay float (A16W8). Also for nn.Embedding tables (rows are gathered
    without dequantizing the table). Per-channel weights run the int8 kernels, grouped ones dequantize.

    ``int8_activations=True`` (opt-in, a numerics change): each activation row is also rounded to int8
    (symmetric per token, at run time), so that the CPU kernels multiply integers (VNNI) instead of
    converting weights to float (1.1 B decode on 2 cores: 1.9x, benchmarks/bench_llamacpp.py). Each row then
    carries a rounding error of up to half its absolute max / 127 per element. Per-channel weights are then
    the weights of ``Int8DynamicActivationInt8WeightConfig()``."""

    group_size: Optional[int] = None
    int8_activations: bool = False

    def __post_init__(self):
        _check_group_size(self, per_channel_ok=True)
        if self.group_size == -1:
            object.__setattr__(self, "group_size", None)

    def unsupported_reason(self, weight):
        return super().unsupported_reason(weight) or (_group_reason(weight, self.group_size) if self.group_size else None)

    def quantize(self, weight):
        return AffineQuantizedTensor.from_float(
            weight, MappingType.SYMMETRIC, (1, self.group_size or weight.shape[1]), torch.int8,
            eps=scale_floor(weight.dtype), scale_dtype=weight.dtype, zero_point_domain=ZeroPointDomain.NONE,
            act_quant="int8_per_token_sym" if self.int8_activations else None,
        )


@dataclass(frozen=True)
class Int4WeightOnlyConfig(WeightConfig):
    """4-bit weights, asymmetric per group of ``group_size`` input features (A16W4).

    Values 0..15. ``zero_point_domain=ZeroPointDomain.FLOAT`` (default): a float zero point,
    x = (q - 8) * scale + zero_point, the form of the int4 kernels; ``ZeroPointDomain.INT``: an integer
    zero point, x = (q - z) * scale, the form GPTQ-style checkpoints store (also run by the int4 kernels).
    ``use_hqq``: HQQ-optimized scale and zero point (of ``zero_point_domain``'s kind). layout: None or ``TensorCoreTiledLayout()``
    picks the fastest layout for the weight's device ("int4_cpu" on CPU when out_features % 16 == 0,
    else "int4_packed"); or give one (a name, a Layout class or instance).

    ``int8_activations=True`` (opt-in, a numerics change): each activation row is also rounded to int8
    (symmetric per token, at run time, as llama.cpp does per block), so that on CPU the int8 x int4 integer
    kernel runs (VNNI) instead of aten's float kernel (1.1 B on 2 cores: decode 1.4x, prefill 2-2.5x; needs
    out_features a multiple of 64, group size up to 256, bf16 or fp32 weights; elsewhere the activation is
    fake-quantized into the weight-only kernel). Each row then carries a rounding error of up to half its
    absolute max / 127 per element.
    """

    group_size: int = 128
    layout: Optional[object] = None
    use_hqq: bool = False
    zero_point_domain: ZeroPointDomain = ZeroPointDomain.FLOAT
    int8_activations: bool = False

    def __post_init__(self):
        _check_group_size(self)
        object.__setattr__(self, "layout", layout_name(self.layout))
        if self.zero_point_domain not in (ZeroPointDomain.FLOAT, ZeroPointDomain.INT):
            raise ValueError(f"Int4WeightOnlyConfig: zero_point_domain must be ZeroPointDomain.FLOAT or INT, "
                             f"got {self.zero_point_domain!r}")

    def _spec(self, weight) -> QuantSpec:
        return _int4_spec(weight, self.group_size, torch.uint4, 0, 15, self.zero_point_domain)

    def unsupported_reason(self, weight):
        reason = super().unsupported_reason(weight) or _group_reason(weight, self.group_size)
        if reason:
            return reason
        spec = self._spec(weight)
        layout = self.layout or best_layout(spec, weight.device, "int4_packed")
        return get_layout(layout).unsupported_reason(replace(spec, layout=layout), weight.device)

    def quantize(self, weight):
        layout = self.layout or best_layout(self._spec(weight), weight.device, "int4_packed")
        if self.use_hqq:
            fmt = IntFormat.for_bits(4)
            float_zero = self.zero_point_domain == ZeroPointDomain.FLOAT
            q, scale, zero = hqq_quantize(weight, fmt, self.group_size, integer_zero=not float_zero)
            weight_only = quantized_weight(q.to(fmt.storage_dtype), scale.to(weight.dtype), zero, fmt,
                                           self.group_size, weight.dtype, layout, float_zero=float_zero)
            return weight_only.with_tensors(lambda t: t, act_quant=self._act_quant())
        integer_zero = self.zero_point_domain == ZeroPointDomain.INT
        return AffineQuantizedTensor.from_float(
            weight, MappingType.ASYMMETRIC, (1, self.group_size), torch.uint4, eps=scale_floor(weight.dtype),
            scale_dtype=weight.dtype, zero_point_dtype=torch.int32 if integer_zero else weight.dtype,
            preserve_zero=integer_zero, zero_point_domain=self.zero_point_domain, layout=layout,
            act_quant=self._act_quant(),
        )

    def _act_quant(self) -> Optional[str]:
        return "int8_per_token_sym" if self.int8_activations else None


_ACT_QUANT = {MappingType.SYMMETRIC: "int8_per_token_sym", MappingType.ASYMMETRIC: "int8_per_token_asym"}


def _act_quant(config, mapping: MappingType) -> str:
    if mapping not in _ACT_QUANT:
        raise ValueError(f"{type(config).__name__}: act_mapping_type must be MappingType.SYMMETRIC or ASYMMETRIC, "
                         f"got {mapping!r}")
    return _ACT_QUANT[mapping]


@dataclass(frozen=True)
class Int8DynamicActivationInt8WeightConfig(WeightConfig):
    """int8 weights (symmetric per channel) and int8 activations quantized per token at run time (A8W8).

    ``act_mapping_type``: symmetric activations (the integer-GEMM kernels) or asymmetric (fake-quantized
    into the weight-only kernels). ``layout``: ``PlainLayout()`` / "plain". ``weight_only_decode=True``
    is refused: our kernels quantize every activation."""

    act_mapping_type: MappingType = MappingType.SYMMETRIC
    weight_only_decode: bool = False
    layout: Optional[object] = "plain"

    def __post_init__(self):
        _act_quant(self, self.act_mapping_type)
        object.__setattr__(self, "layout", layout_name(self.layout, "plain"))
        if self.weight_only_decode:
            raise ValueError("Int8DynamicActivationInt8WeightConfig: weight_only_decode=True is not supported "
                             "(every activation is quantized); use int8_weight_only() for decode-only layers")

    def quantize(self, weight):
        return AffineQuantizedTensor.from_float(
            weight, MappingType.SYMMETRIC, (1, weight.shape[1]), torch.int8, eps=scale_floor(weight.dtype),
            scale_dtype=weight.dtype, zero_point_domain=ZeroPointDomain.NONE, layout=self.layout,
            act_quant=_act_quant(self, self.act_mapping_type),
        )


@dataclass(frozen=True)
class Int8DynamicActivationInt4WeightConfig(WeightConfig):
    """int4 weights (symmetric per group, range [-8, 7]) and int8 per-token asymmetric activations
    (8da4w, the ExecuTorch scheme); on CPU the activation is fake-quantized into the int4 kernel."""

    group_size: int = 32
    layout: Optional[object] = None
    mapping_type: MappingType = MappingType.SYMMETRIC
    act_mapping_type: MappingType = MappingType.ASYMMETRIC

    def __post_init__(self):
        _check_group_size(self)
        _act_quant(self, self.act_mapping_type)
        object.__setattr__(self, "layout", layout_name(self.layout))
        if self.mapping_type not in (MappingType.SYMMETRIC, MappingType.ASYMMETRIC):
            raise ValueError(f"Int8DynamicActivationInt4WeightConfig: mapping_type must be SYMMETRIC or "
                             f"ASYMMETRIC, got {self.mapping_type!r}")

    def unsupported_reason(self, weight):
        return super().unsupported_reason(weight) or _group_reason(weight, self.group_size)

    def quantize(self, weight):
        fmt = IntFormat.for_bits(4, sym=self.mapping_type == MappingType.SYMMETRIC)
        spec = _int4_spec(weight, self.group_size, fmt.target_dtype, fmt.quant_min, fmt.quant_max,
                          fmt.zero_point_domain)
        return AffineQuantizedTensor.from_float(
            weight, fmt.mapping_type, (1, self.group_size), fmt.target_dtype, fmt.quant_min, fmt.quant_max,
            eps=scale_floor(weight.dtype), scale_dtype=weight.dtype, zero_point_dtype=torch.int32,
            zero_point_domain=fmt.zero_point_domain, act_quant=_act_quant(self, self.act_mapping_type),
            layout=self.layout or best_layout(spec, weight.device, "plain"),
        )


@dataclass(frozen=True)
class IntxWeightOnlyConfig(WeightConfig):
    """Round-to-nearest weights of any width 1..8 bits.

    Linear weights (N, K): groups of ``group_size`` input features (None or -1: one group per row, i.e. per
    channel; 0 and other non-positive values are refused); <= 4 bits use the int4 kernel layouts. Convolution weights (O, I, *kernel): per output channel, or groups of ``group_size``
    input channels (with the whole kernel window), densely bit-packed below 8 bits. Asymmetric, or ``sym``.
    ``use_hqq``: optimize the scale (``hqq_scale``) and the zero point with HQQ and least squares
    (asymmetric, 2-D); per group never worse than round-to-nearest in squared weight error.
    ``zero_point_domain``: ``ZeroPointDomain.INT`` (an integer zero point, x = (q - z) * scale, the form of
    GPTQ-style checkpoints; the default without HQQ) or ``ZeroPointDomain.FLOAT`` (a float offset, the
    default with HQQ: lower weight error, see ``quant_api/hqq.py``); symmetric weights have none.
    """

    bits: int = 4
    group_size: Optional[int] = 128
    sym: bool = False
    use_hqq: bool = False
    hqq_scale: bool = True
    zero_point_domain: Optional[ZeroPointDomain] = None

    def __post_init__(self):
        fmt = IntFormat.for_bits(self.bits, self.sym)
        _check_group_size(self, per_channel_ok=True)
        if self.group_size == -1:
            object.__setattr__(self, "group_size", None)
        if self.use_hqq and self.sym:
            raise ValueError("IntxWeightOnlyConfig: HQQ optimizes a zero point, so use_hqq=True needs sym=False")
        if self.zero_point_domain is None:
            default = ZeroPointDomain.FLOAT if self.use_hqq else fmt.zero_point_domain
            object.__setattr__(self, "zero_point_domain", default)
        allowed = (fmt.zero_point_domain,) if self.sym else (ZeroPointDomain.INT, ZeroPointDomain.FLOAT)
        if self.zero_point_domain not in allowed:
            raise ValueError(f"IntxWeightOnlyConfig: zero_point_domain must be one of {list(allowed)} with "
                             f"sym={self.sym}, got {self.zero_point_domain!r}")

    def unsupported_reason(self, weight):
        if isinstance(weight, AffineQuantizedTensor):
            return "already quantized"
        if not weight.is_floating_point() or weight.dim() < 2:
            return f"needs a float weight of 2 or more dims, got {tuple(weight.shape)} {weight.dtype}"
        if weight.dim() > 2 and (self.use_hqq or self.zero_point_domain == ZeroPointDomain.FLOAT):
            return "HQQ and float zero points are implemented for 2-D (Linear / Embedding) weights"
        if self.group_size and weight.shape[1] % self.group_size:
            unit = "in_features" if weight.dim() == 2 else "input channels"
            return f"{unit} {weight.shape[1]} is not divisible by group_size {self.group_size}"
        return None

    def quantize(self, weight):
        fmt = IntFormat.for_bits(self.bits, self.sym)
        group = self.group_size or weight.shape[1]
        if weight.dim() > 2:
            return AffineQuantizedTensor.from_float(
                weight, fmt.mapping_type, (1, group) + tuple(weight.shape[2:]), fmt.target_dtype, fmt.quant_min,
                fmt.quant_max, eps=scale_floor(weight.dtype), scale_dtype=weight.dtype,
                zero_point_dtype=torch.int32,
                zero_point_domain=fmt.zero_point_domain, layout="bitpacked" if self.bits < 8 else "plain",
            )
        float_zero = self.zero_point_domain == ZeroPointDomain.FLOAT
        if self.use_hqq:
            q, scale, zero = hqq_quantize(weight, fmt, group, optimize_scale=self.hqq_scale, integer_zero=not float_zero)
            return quantized_weight(q.to(fmt.storage_dtype), scale.to(weight.dtype), zero, fmt, group, weight.dtype,
                                    float_zero=float_zero)
        plain = AffineQuantizedTensor.from_float(
            weight, fmt.mapping_type, (1, group), fmt.target_dtype, fmt.quant_min, fmt.quant_max,
            eps=scale_floor(weight.dtype), scale_dtype=weight.dtype,
            zero_point_dtype=weight.dtype if float_zero else torch.int32, preserve_zero=not float_zero,
            zero_point_domain=self.zero_point_domain,
        )
        return plain.relayout(fastest_layout(plain.spec, weight.device))


@dataclass(frozen=True)
class PerRow:
    """Granularity: one scale per output channel of a weight (per token of an activation)."""


@dataclass(frozen=True)
class PerTensor:
    """Granularity: one scale for the whole weight."""


def _check_float8(config, name: str) -> None:
    if getattr(config, name) not in FLOAT8_DTYPES:
        raise ValueError(f"{type(config).__name__}: {name} must be one of {list(FLOAT8_DTYPES)}, "
                         f"got {getattr(config, name)!r}")


def _float8_weight(weight: torch.Tensor, dtype: torch.dtype, granularity, act_quant: Optional[str] = None):
    block = (1, weight.shape[1]) if isinstance(granularity, PerRow) else tuple(weight.shape)
    return AffineQuantizedTensor.from_float(weight, MappingType.SYMMETRIC, block, dtype, eps=scale_floor(weight.dtype),
                                            scale_dtype=torch.float32, zero_point_domain=ZeroPointDomain.NONE,
                                            act_quant=act_quant)


@dataclass(frozen=True)
class Float8WeightOnlyConfig(WeightConfig):
    """float8 weights (``weight_dtype``, default torch.float8_e4m3fn), one float32 scale per output channel
    (absmax / the format's largest value); activations stay float. On CPU F.linear dequantizes (there is
    no float8 matmul kernel here); the weights take half the memory of bf16."""

    weight_dtype: torch.dtype = torch.float8_e4m3fn

    def __post_init__(self):
        _check_float8(self, "weight_dtype")

    def quantize(self, weight):
        return _float8_weight(weight, self.weight_dtype, PerRow())


@dataclass(frozen=True)
class Float8DynamicActivationFloat8WeightConfig(WeightConfig):
    """float8 weights (per output channel with ``PerRow()``, one scale with ``PerTensor()``) and float8
    activations quantized per token at run time (``activation_dtype``). On CPU both are dequantized for
    F.linear (the numerics of float8, not its speed)."""

    activation_dtype: torch.dtype = torch.float8_e4m3fn
    weight_dtype: torch.dtype = torch.float8_e4m3fn
    granularity: object = PerRow()

    def __post_init__(self):
        _check_float8(self, "activation_dtype")
        _check_float8(self, "weight_dtype")
        if not isinstance(self.granularity, (PerRow, PerTensor)):
            raise ValueError(f"Float8DynamicActivationFloat8WeightConfig: granularity must be PerRow() or PerTensor(), "
                             f"got {self.granularity!r}")

    def quantize(self, weight):
        act_quant = f"{str(self.activation_dtype).replace('torch.', '')}_per_token"
        return _float8_weight(weight, self.weight_dtype, self.granularity, act_quant)


def intx_weight_only(bits: int = 4, group_size: Optional[int] = 128, sym: bool = False, use_hqq: bool = False,
                     hqq_scale: bool = True, zero_point_domain: Optional[ZeroPointDomain] = None) -> IntxWeightOnlyConfig:
    return IntxWeightOnlyConfig(bits, group_size, sym, use_hqq, hqq_scale, zero_point_domain)


def int8_weight_only(group_size: Optional[int] = None) -> Int8WeightOnlyConfig:
    return Int8WeightOnlyConfig(group_size)


def int4_weight_only(group_size: int = 128, layout=None, use_hqq: bool = False,
                     zero_point_domain: ZeroPointDomain = ZeroPointDomain.FLOAT) -> Int4WeightOnlyConfig:
    return Int4WeightOnlyConfig(group_size, layout, use_hqq, zero_point_domain)


def int8_dynamic_activation_int8_weight(act_mapping_type: MappingType = MappingType.SYMMETRIC,
                                        weight_only_decode: bool = False,
                                        layout="plain") -> Int8DynamicActivationInt8WeightConfig:
    return Int8DynamicActivationInt8WeightConfig(act_mapping_type, weight_only_decode, layout)


def int8_dynamic_activation_int4_weight(group_size: int = 32, layout=None,
                                        mapping_type: MappingType = MappingType.SYMMETRIC,
                                        act_mapping_type: MappingType = MappingType.ASYMMETRIC
                                        ) -> Int8DynamicActivationInt4WeightConfig:
    return Int8DynamicActivationInt4WeightConfig(group_size, layout, mapping_type, act_mapping_type)


# the seed README's names
def get_apply_int8wo_quant() -> Int8WeightOnlyConfig:
    return int8_weight_only()


def get_apply_int4wo_quant(groupsize: int = 32) -> Int4WeightOnlyConfig:
    return int4_weight_only(group_size=groupsize)


def get_apply_int8dyn_quant() -> Int8DynamicActivationInt8WeightConfig:
    return int8_dynamic_activation_int8_weight()


def float8_weight_only(weight_dtype: torch.dtype = torch.float8_e4m3fn) -> Float8WeightOnlyConfig:
    return Float8WeightOnlyConfig(weight_dtype)


def float8_dynamic_activation_float8_weight(activation_dtype: torch.dtype = torch.float8_e4m3fn,
                                            weight_dtype: torch.dtype = torch.float8_e4m3fn,
                                            granularity=PerRow()) -> Float8DynamicActivationFloat8WeightConfig:
    return Float8DynamicActivationFloat8WeightConfig(activation_dtype, weight_dtype, granularity)
