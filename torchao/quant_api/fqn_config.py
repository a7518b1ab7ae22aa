"""FqnToConfig: a different config per module, by fully qualified name or regular expression.

    quantize_(model, FqnToConfig({
        "lm_head": None,                                  # leave it in float
        "re:model\\.layers\\.\\d+\\.mlp\\..*": int4_weight_only(64),
        "_default": int8_weight_only(),                   # every other nn.Linear
    }))

A key is a module name (or a parameter name ``<module>.weight``), ``re:<pattern>`` (matched against the
whole module name), or ``_default`` (nn.Linear layers no other key covers). Exact names win over
patterns, patterns are tried in order, a None value leaves the module alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch.nn as nn

from torchao.quant_api.configs import AOBaseConfig

__all__ = ["FqnToConfig", "fqn_matches_fqn_config", "DEFAULT_KEY"]

DEFAULT_KEY = "_default"
_REGEX = "re:"


@dataclass
class FqnToConfig(AOBaseConfig):
    """Module name (or ``re:`` pattern, or ``_default``) -> config (None: keep float)."""

    fqn_to_config: Dict[str, Optional[AOBaseConfig]] = field(default_factory=dict)

    def __post_init__(self):
        for key, config in self.fqn_to_config.items():
            if not isinstance(key, str):
                raise TypeError(f"FqnToConfig keys are module names or 're:' patterns, got {key!r}")
            if key.startswith(_REGEX):
                try:
                    re.compile(key[len(_REGEX):])
                except re.error as e:
                    raise ValueError(f"FqnToConfig: {key!r} is not a valid regular expression ({e})") from None
            if config is not None and not isinstance(config, AOBaseConfig):
                raise TypeError(f"FqnToConfig[{key!r}] must be a config (AOBaseConfig) or None, got "
                                f"{type(config).__name__}")
            if isinstance(config, FqnToConfig) or hasattr(config, "quantized_weights"):
                raise TypeError(f"FqnToConfig[{key!r}]: nested FqnToConfig and calibrated configs (GPTQ, "
                                "AutoRound) are not supported per module; run them with quantize_ directly")

    @property
    def module_fqn_to_config(self) -> Dict[str, Optional[AOBaseConfig]]:
        """The same mapping (the name transformers' integration also reads)."""
        return self.fqn_to_config

    def match(self, fqn: str) -> Optional[str]:
        """The key that covers module ``fqn`` (exact name, its ``.weight``, then patterns in order), or None."""
        if fqn in self.fqn_to_config:
            return fqn
        if f"{fqn}.weight" in self.fqn_to_config:
            return f"{fqn}.weight"
        return next((key for key in self.fqn_to_config
                     if key.startswith(_REGEX) and re.fullmatch(key[len(_REGEX):], fqn)), None)

    def config_for(self, module: nn.Module, fqn: str) -> Optional[AOBaseConfig]:
        """The config for ``module`` called ``fqn`` (the ``_default`` one for an uncovered nn.Linear)."""
        key = self.match(fqn)
        if key is not None:
            return self.fqn_to_config[key]
        return self.fqn_to_config.get(DEFAULT_KEY) if isinstance(module, nn.Linear) else None


def fqn_matches_fqn_config(fqn: str, config: FqnToConfig) -> bool:
    """Whether a key of ``config`` (``_default`` aside) names ``fqn`` (a module or parameter name): exactly,
    as ``<fqn>.weight``, or by pattern."""
    return config.match(fqn) is not None
