"""AutoRound (SignRound, Cheng et al. 2023): tune rounding and clipping per block by signed gradient descent.

For each transformer block (or ``n_blocks`` consecutive ones) every Linear is wrapped with a rounding
perturbation V and per-group min/max clipping factors (autoround_math.py); a few hundred signed-SGD
steps minimize the MSE between the float block's output on float inputs and the wrapped block's output
on the quantized model's inputs; the lowest-loss parameters are kept and the weights become
AffineQuantizedTensors in the kernel layouts. ``autoround(...)`` is the config for ``quantize_``;
``AutoRound(model, ...).quantize()`` is the class form of seed 001.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from torchao.quant_api.apply import quantize_
from torchao.quant_api.configs import AOBaseConfig
from torchao.quant_api.autoround_math import LayerSpec, WrapperLinear
from torchao.quant_api.autoround_tuning import AutoRoundReport, tune_autoround
from torchao.quant_api.calibration import CalibrationError, get_block_names

__all__ = ["WrapperLinear", "LayerSpec", "AutoRoundConfig", "AutoRoundReport", "autoround", "tune_autoround",
           "AutoRound", "AutoOPTRound", "AutoAdamRound"]


# ---- the config -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoRoundConfig(AOBaseConfig):
    """Model-level config: ``quantize_(model, autoround(calibration, bits=4, group_size=128, iters=200))``.

    calibration: token-id tensors, a dataloader, or texts (with ``tokenizer``), see calibration_batches.
    weight_config: per-layer overrides {"block.0.mlp.up_proj": {"bits": 8, "group_size": -1,
        "scheme": "sym", "data_type": "int"}}. iters, lr (default 1 / iters), minmax_lr (default lr),
    bs (samples per step), gradient_accumulate_steps, n_samples, seqlen, seed, n_blocks (blocks tuned
    together), use_quant_input, enable_minmax_tuning, not_use_mse (keep the last iterate instead of the
    lowest-loss parameters), dynamic_max_gap (stop after that many steps without a better loss; -1 never),
    amp (run blocks in amp_dtype with float32 tuning parameters), low_gpu_mem_usage (keep cached
    activations on CPU), quant_nonblock_layers (also round-to-nearest the Linear layers outside the
    blocks, e.g. lm_head), optimizer ("sign_sgd" or a torch.optim class), progress.
    """

    calibration: object
    bits: int = 4
    group_size: int = 128
    scheme: str = "asym"
    weight_config: Dict[str, dict] = field(default_factory=dict)
    enable_full_range: bool = False
    bs: int = 8
    amp: bool = True
    amp_dtype: Optional[torch.dtype] = None
    device: Optional[torch.device] = None
    lr_scheduler: Optional[Callable] = None
    use_quant_input: bool = True
    enable_minmax_tuning: bool = True
    lr: Optional[float] = None
    minmax_lr: Optional[float] = None
    low_gpu_mem_usage: bool = True
    iters: int = 200
    seqlen: int = 2048
    n_samples: int = 512
    sampler: str = "rand"
    seed: int = 42
    n_blocks: int = 1
    gradient_accumulate_steps: int = 1
    not_use_mse: bool = False
    dynamic_max_gap: int = -1
    data_type: str = "int"
    tokenizer: object = None
    block_names: Optional[List[str]] = None
    quant_nonblock_layers: bool = False
    optimizer: object = "sign_sgd"
    layout: Optional[str] = None
    progress: bool = True

    def __post_init__(self):
        if self.data_type != "int":
            raise ValueError(f"data_type {self.data_type!r} is not supported; only 'int'")
        self._spec({})  # validates bits, group_size, scheme
        if self.lr is None:
            object.__setattr__(self, "lr", 1.0 / self.iters if self.optimizer == "sign_sgd" else 5e-3)
        if self.minmax_lr is None:
            object.__setattr__(self, "minmax_lr", self.lr)
        if self.n_samples < self.bs:
            raise ValueError(f"n_samples ({self.n_samples}) must be at least bs ({self.bs})")
        if self.sampler not in ("rand", "linear"):
            raise ValueError(f"sampler must be 'rand' or 'linear', got {self.sampler!r}")

    def layer_spec(self, fqn: str) -> LayerSpec:
        """How layer ``fqn`` is quantized: the defaults with its ``weight_config`` overrides."""
        return self._spec(self.weight_config.get(fqn, {}))

    def _spec(self, override: dict) -> LayerSpec:
        unknown = set(override) - {"bits", "group_size", "scheme", "data_type"}
        if unknown:
            raise ValueError(f"weight_config keys {sorted(unknown)} are not understood (bits, group_size, scheme, data_type)")
        if override.get("data_type", "int") != "int":
            raise ValueError(f"data_type {override['data_type']!r} is not supported; only 'int'")
        spec = LayerSpec(override.get("bits", self.bits), override.get("group_size", self.group_size),
                         override.get("scheme", self.scheme), self.enable_full_range)
        if spec.scheme not in ("asym", "sym"):
            raise ValueError(f"scheme must be 'asym' or 'sym', got {spec.scheme!r}")
        spec.format()  # validates bits
        return spec

    def unsupported_reason(self, layer: nn.Linear, spec: LayerSpec) -> Optional[str]:
        group = spec.group_for(layer.in_features)
        if layer.in_features % group:
            return f"in_features {layer.in_features} is not divisible by group_size {group}"
        return None

    # ---- model level ----------------------------------------------------------------------------

    def block_names_of(self, model: nn.Module) -> List[str]:
        names = self.block_names if self.block_names is not None else get_block_names(model)
        if not names:
            raise CalibrationError(f"no transformer blocks found in {type(model).__name__}; pass block_names=[...]")
        return names

    @staticmethod
    def block_of(fqn: str, block_names: Sequence[str]) -> Optional[str]:
        return next((b for b in block_names if fqn.startswith(b + ".")), None)

    def layers_to_quantize(self, model: nn.Module, targets: Dict[str, nn.Module]) -> Dict[str, nn.Module]:
        """The selected Linear layers inside the blocks, plus those outside that ``weight_config`` names or
        ``quant_nonblock_layers`` takes (round-to-nearest)."""
        block_names = self.block_names_of(model)
        linears = {fqn: m for fqn, m in targets.items() if isinstance(m, nn.Linear)}
        unknown = sorted(set(self.weight_config) - set(linears))
        if unknown:
            raise ValueError(f"weight_config names layers that are not quantizable Linear layers: {unknown}")
        return {fqn: m for fqn, m in linears.items() if self.block_of(fqn, block_names) is not None
                or self.quant_nonblock_layers or fqn in self.weight_config}

    def unsupported_layers(self, layers: Dict[str, nn.Module]) -> Dict[str, str]:
        return {fqn: r for fqn, m in layers.items() if (r := self.unsupported_reason(m, self.layer_spec(fqn)))}

    def quantized_weights(self, model: nn.Module, layers: Dict[str, nn.Module]) -> Dict[str, nn.Parameter]:
        """AutoRound weights for ``layers`` (see tune_autoround; its report is logged)."""
        return tune_autoround(model, self, layers)[0]


def autoround(calibration, bits: int = 4, group_size: int = 128, iters: int = 200, **kwargs) -> AutoRoundConfig:
    """AutoRound config for ``quantize_``; see AutoRoundConfig for the options."""
    return AutoRoundConfig(calibration, bits=bits, group_size=group_size, iters=iters, **kwargs)


class AutoRound:
    """Seed 001's class form: ``AutoRound(model, tokenizer, bits=4, group_size=128, ...).quantize()``.

    Calibration comes from ``dataloader`` (token-id tensors, dicts or a DataLoader) or from local
    ``texts`` with the tokenizer; a hub ``dataset_name`` is loaded with the ``datasets`` package when it is
    installed and no local data is given. Returns the model, quantized in place, from quantize().
    """

    _optimizer = "sign_sgd"

    def __init__(self, model: nn.Module, tokenizer=None, bits: int = 4, group_size: int = 128, scheme: str = "asym",
                 weight_config: Optional[dict] = None, enable_full_range: bool = False, bs: int = 8, amp: bool = True,
                 device=None, lr_scheduler=None, dataloader=None, dataset_name: str = "NeelNanda/pile-10k",
                 dataset_split: str = "train", use_quant_input: bool = True, enable_minmax_tuning: bool = True,
                 lr: Optional[float] = None, minmax_lr: Optional[float] = None, low_gpu_mem_usage: bool = True,
                 iters: int = 200, seqlen: int = 2048, n_samples: int = 512, sampler: str = "rand", seed: int = 42,
                 n_blocks: int = 1, gradient_accumulate_steps: int = 1, not_use_mse: bool = False,
                 dynamic_max_gap: int = -1, data_type: str = "int", texts: Optional[List[str]] = None, **kwargs):
        self.model = model
        calibration = dataloader if dataloader is not None else texts
        if calibration is None:
            calibration = _hub_texts(dataset_name, dataset_split, n_samples)
        optimizer = kwargs.pop("optimizer", self._optimizer)
        self.config = AutoRoundConfig(
            calibration, bits=bits, group_size=group_size, scheme=scheme, weight_config=dict(weight_config or {}),
            enable_full_range=enable_full_range, bs=bs, amp=amp, device=device, lr_scheduler=lr_scheduler,
            use_quant_input=use_quant_input, enable_minmax_tuning=enable_minmax_tuning, lr=lr, minmax_lr=minmax_lr,
            low_gpu_mem_usage=low_gpu_mem_usage, iters=iters, seqlen=seqlen, n_samples=n_samples, sampler=sampler,
            seed=seed, n_blocks=n_blocks, gradient_accumulate_steps=gradient_accumulate_steps, not_use_mse=not_use_mse,
            dynamic_max_gap=dynamic_max_gap, data_type=data_type, tokenizer=tokenizer, optimizer=optimizer, **kwargs,
        )

    def quantize(self, filter_fn=None) -> nn.Module:
        quantize_(self.model, self.config, filter_fn)
        return self.model


class AutoOPTRound(AutoRound):
    """AutoRound with a torch optimizer instead of signed SGD (``optimizer=torch.optim.AdamW`` by default)."""

    _optimizer = torch.optim.AdamW


class AutoAdamRound(AutoOPTRound):
    """AutoRound with AdamW (default lr 5e-3)."""


def _hub_texts(name: str, split: str, n_samples: int) -> List[str]:
    hint = "no calibration data: pass dataloader=... or texts=[...]"
    try:
        import datasets
    except ImportError:
        raise CalibrationError(f"{hint} (loading a hub dataset needs the 'datasets' package and network "
                               "access)") from None
    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name or split: whatever datasets raises, say what to do
        raise CalibrationError(f"{hint} (the hub dataset {name!r} could not be loaded: {type(e).__name__}: "
                               f"{str(e)[:200]})") from e
    return [row["text"] for row in data.select(range(min(len(data), n_samples)))]
