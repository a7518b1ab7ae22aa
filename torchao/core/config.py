"""Import path torchao.core.config (re-exports of torchao.quant_api.config_serialization)."""

from torchao.quant_api.config_serialization import config_from_dict, config_to_dict
from torchao.quant_api.configs import AOBaseConfig

__all__ = ["AOBaseConfig", "config_to_dict", "config_from_dict"]
