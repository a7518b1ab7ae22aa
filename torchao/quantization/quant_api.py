"""Seed import path torchao.quantization.quant_api (re-exports of torchao.quant_api)."""

from torchao.quant_api import *  # noqa: F401,F403
from torchao.quant_api import __all__  # noqa: F401
