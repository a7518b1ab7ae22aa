"""Seed import path torchao.quantization.quant_api (re-exports of torchao.quant_api)."""

from torchao.quant_api import *  # noqa: F401,F403
from torchao.quant_api import __all__ as _all
from torchao.quant_api.legacy import _replace_with_custom_fn_if_matches_filter  # noqa: F401

__all__ = list(_all) + ["_replace_with_custom_fn_if_matches_filter"]
