"""Seed import path torchao.quantization.quant_primitives (re-exports of torchao.qtensor.primitives, and the
HQQ primitive of torchao.quant_api.hqq)."""

from torchao.qtensor.primitives import *  # noqa: F401,F403
from torchao.qtensor.primitives import __all__ as _all
from torchao.quant_api.hqq import choose_qparams_and_quantize_affine_hqq  # noqa: F401

__all__ = list(_all) + ["choose_qparams_and_quantize_affine_hqq"]
