"""Seed import path torchao.quantization.quant_primitives (re-exports of torchao.qtensor.primitives)."""

from torchao.qtensor.primitives import *  # noqa: F401,F403
from torchao.qtensor.primitives import __all__  # noqa: F401
