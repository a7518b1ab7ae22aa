"""AutoRound (SignRound, Cheng et al. 2023): tune rounding and clipping per block by signed gradient descent.

For each transformer block (or ``n_blocks`` consecutive ones) every Linear is wrapped with a rounding
perturbation V and per-group min/max clipping factors (autoround_math.py); a few hundred signed-SGD
steps minimize the MSE between the float block's output on float inputs and the wrapped block's output
on the quantized model's inputs; the lowest-loss parameters are kept and the weights become
AffineQuantizedTensors in the kernel layouts. ``autoround(...)`` is the config for ``quantize_``;
``AutoRound(model, ...).quantize()`` is the class form of seed 001.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from torchao.qtensor import qparams_shape
from torchao.qtensor.primitives import round_to_grid
from torchao.quant_api.autoround_math import get_scale_shape, quant_weight, sign_sgd_step
from torchao.quant_api.apply import quantize_
from torchao.quant_api.calibration import (
    BlockInput,
    CalibrationError,
    blocks_are_chained,
    calibration_batches,
    capture_block_inputs,
    get_block_names,
    get_module,
    map_hidden_states,
    move_to,
    set_module,
    run_block,
    stackable,
    with_hidden_states,
)
from torchao.quant_api.weight_format import IntFormat, quantized_weight

__all__ = ["WrapperLinear", "LayerSpec", "AutoRoundConfig", "autoround", "AutoRound", "AutoOPTRound", "AutoAdamRound"]


@dataclass(frozen=True)
class LayerSpec:
    """How one layer is quantized: bits, group_size (-1: per channel), scheme "asym" / "sym"."""

    bits: int = 4
    group_size: int = 128
    scheme: str = "asym"
    full_range: bool = False

    def format(self) -> IntFormat:
        return IntFormat.for_bits(self.bits, self.scheme == "sym", self.full_range)

    def group_for(self, in_features: int) -> int:
        return in_features if self.group_size in (-1, None) else self.group_size


class WrapperLinear(nn.Module):
    """A Linear whose weight is quantize-dequantized with learnable V (N, K) and clipping factors."""

    def __init__(self, layer: nn.Linear, spec: LayerSpec, enable_minmax_tuning: bool = True):
        super().__init__()
        self.layer, self.spec = layer, spec
        weight = layer.weight.detach()
        self.scale_dtype = weight.dtype
        self.value = nn.Parameter(torch.zeros(weight.shape, dtype=torch.float32, device=weight.device))
        shape = get_scale_shape(weight, spec.group_for(weight.shape[1]))
        make = (lambda: nn.Parameter(torch.ones(shape, dtype=torch.float32, device=weight.device))) if enable_minmax_tuning \
            else (lambda: None)
        self.min_scale, self.max_scale = make(), make()

    def tuned(self) -> List[nn.Parameter]:
        return [p for p in (self.value, self.min_scale, self.max_scale) if p is not None]

    def qdq(self):
        return quant_weight(
            self.layer.weight, self.spec.bits, self.spec.group_for(self.layer.in_features), self.spec.scheme,
            self.value, 1.0 if self.min_scale is None else self.min_scale,
            1.0 if self.max_scale is None else self.max_scale, self.scale_dtype, self.spec.full_range,
        )

    def forward(self, x):
        weight, _, _ = self.qdq()
        return F.linear(x, weight.to(x.dtype), None if self.layer.bias is None else self.layer.bias.to(x.dtype))

    @torch.no_grad()
    def clamp_factors(self) -> None:
        for p in (self.min_scale, self.max_scale):
            if p is not None:
                p.clamp_(0.0, 1.0)

    @torch.no_grad()
    def quantized(self, layout: Optional[str]):
        """The AffineQuantizedTensor for the current parameters."""
        _, scale, zp = self.qdq()
        fmt = self.spec.format()
        n, k = self.layer.weight.shape
        group = self.spec.group_for(k)
        w = self.layer.weight.to(torch.float32).reshape(n, k // group, group)
        value = self.value.reshape(n, k // group, group)
        q = round_to_grid(w, scale.unsqueeze(-1), zp.unsqueeze(-1), fmt.quant_min, fmt.quant_max,
                          rounding=lambda t: torch.round(t + value))
        q = q.reshape(n, k).to(fmt.storage_dtype)
        shape = qparams_shape((1, group), (n, k))  # (N,) per channel, (N, K // g) per group
        return quantized_weight(q, scale.to(self.scale_dtype).reshape(shape), zp.reshape(shape), fmt, group,
                                self.layer.weight.dtype, layout)


# ---- batching cached block inputs --------------------------------------------------------------------


class _Samples:
    """Cached block inputs and float targets; ``batch(indices)`` gives one stacked forward's worth."""

    def __init__(self, inputs: List[BlockInput], targets: List[torch.Tensor]):
        self.inputs, self.targets = inputs, targets
        self.stack = stackable(inputs)
        if self.stack:
            self.hidden = torch.cat([inp.args[0] for inp in inputs])
            self.target = torch.cat(targets)
            self.rows = inputs[0].args[0].shape[0]

    def __len__(self):
        return len(self.inputs)

    def batches(self, indices: List[int]):
        """(BlockInput, target, number of samples) covering ``indices`` (one forward when the inputs stack)."""
        if self.stack:
            rows = torch.cat([torch.arange(i * self.rows, (i + 1) * self.rows) for i in indices])
            yield with_hidden_states(self.inputs[0], self.hidden[rows]), self.target[rows], len(indices)
        else:
            for i in indices:
                yield self.inputs[i], self.targets[i], 1


# ---- the config -------------------------------------------------------------------------------------


@dataclass
class AutoRoundConfig:
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
        self.default_spec = self._spec({})
        if self.lr is None:
            self.lr = 1.0 / self.iters if self.optimizer == "sign_sgd" else 5e-3
        if self.minmax_lr is None:
            self.minmax_lr = self.lr
        if self.n_samples < self.bs:
            raise ValueError(f"n_samples ({self.n_samples}) must be at least bs ({self.bs})")
        if self.sampler not in ("rand", "linear"):
            raise ValueError(f"sampler must be 'rand' or 'linear', got {self.sampler!r}")

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

    def _block_names(self, model: nn.Module) -> List[str]:
        names = self.block_names if self.block_names is not None else get_block_names(model)
        if not names:
            raise CalibrationError(f"no transformer blocks found in {type(model).__name__}; pass block_names=[...]")
        return names

    def _block_of(self, fqn: str, block_names: Sequence[str]) -> Optional[str]:
        return next((b for b in block_names if fqn.startswith(b + ".")), None)

    def layers_to_quantize(self, model: nn.Module, targets: Dict[str, nn.Module]) -> Dict[str, nn.Module]:
        """The selected Linear layers inside the blocks, plus those outside that ``weight_config`` names or
        ``quant_nonblock_layers`` takes (round-to-nearest)."""
        block_names = self._block_names(model)
        linears = {fqn: m for fqn, m in targets.items() if isinstance(m, nn.Linear)}
        unknown = sorted(set(self.weight_config) - set(linears))
        if unknown:
            raise ValueError(f"weight_config names layers that are not quantizable Linear layers: {unknown}")
        return {fqn: m for fqn, m in linears.items() if self._block_of(fqn, block_names) is not None
                or self.quant_nonblock_layers or fqn in self.weight_config}

    def unsupported_layers(self, layers: Dict[str, nn.Module]) -> Dict[str, str]:
        return {fqn: r for fqn, m in layers.items()
                if (r := self.unsupported_reason(m, self._spec(self.weight_config.get(fqn, {}))))}

    def quantized_weights(self, model: nn.Module, layers: Dict[str, nn.Module]) -> Dict[str, nn.Parameter]:
        """AutoRound weights for ``layers``: tuned block by block (round-to-nearest outside the blocks);
        the model is left as it was."""
        block_names = self._block_names(model)
        specs = {n: self._spec(self.weight_config.get(n, {})) for n in layers}
        in_block = {n: self._block_of(n, block_names) for n in layers}
        batches = calibration_batches(self.calibration, self.tokenizer, self.seqlen, self.n_samples, model)

        torch.manual_seed(self.seed)
        blocks = [get_module(model, n) for n in block_names]
        results: Dict[str, nn.Parameter] = {}
        offload = torch.device("cpu")
        home = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._device = torch.device(self.device) if self.device is not None else home
        store = offload if self.low_gpu_mem_usage else self._device
        float_inputs = capture_block_inputs(model, blocks[0], batches, store)
        chained = blocks_are_chained(model, blocks, batches[0])
        if not chained:
            raise CalibrationError("AutoRound needs each block's output to be the next block's input; "
                                   "wrap the residual into the blocks or pass block_names")
        q_inputs = float_inputs
        self.block_losses = {}
        groups = [block_names[i:i + self.n_blocks] for i in range(0, len(block_names), self.n_blocks)]
        bar = tqdm(groups, desc="AutoRound", unit="block", disable=not self.progress)
        for names in bar:
            group_blocks = [get_module(model, n) for n in names]
            group_layers = {n: m for n, m in layers.items() if in_block[n] in names}
            float_inputs, q_inputs, before, after = self._tune_blocks(
                model, names, group_blocks, group_layers, specs, float_inputs, q_inputs, results)
            self.block_losses[names[0]] = (before, after)
            bar.set_postfix_str(f"loss {before:.3g} -> {after:.3g}")
            if self.progress:
                tqdm.write(f"AutoRound {names[0]}{'..' + names[-1] if len(names) > 1 else ''}: "
                           f"loss {before:.4g} -> {after:.4g}")
        for n, m in layers.items():
            if in_block[n] is None:
                results[n] = nn.Parameter(self._rtn(m, specs[n]), requires_grad=False)
        return results

    def _rtn(self, layer: nn.Linear, spec: LayerSpec):
        return WrapperLinear(layer, spec, enable_minmax_tuning=False).quantized(self.layout)

    def _optimizers(self, wrappers: List[WrapperLinear]):
        values = [w.value for w in wrappers]
        factors = [p for w in wrappers for p in (w.min_scale, w.max_scale) if p is not None]
        if self.optimizer == "sign_sgd":
            return None
        opt_cls = self.optimizer if isinstance(self.optimizer, type) else getattr(torch.optim, str(self.optimizer))
        groups = [{"params": values, "lr": self.lr}] + ([{"params": factors, "lr": self.minmax_lr}] if factors else [])
        return opt_cls(groups, lr=self.lr)

    def _amp_dtype(self, device: torch.device) -> Optional[torch.dtype]:
        """The autocast dtype of the block forwards (None: amp off)."""
        if not self.amp:
            return None
        return self.amp_dtype or (torch.bfloat16 if device.type == "cpu" else torch.float16)

    def _forward(self, blocks, inp: BlockInput):
        hidden = None
        for block in blocks:
            if hidden is not None:
                inp = with_hidden_states(inp, hidden)
            hidden = run_block(block, inp, self._device)
        return hidden

    def _tune_blocks(self, model, names, blocks, layers, specs, float_inputs, q_inputs, results):
        device = self._device
        homes = [next((p.device for p in b.parameters()), device) for b in blocks]
        for b in blocks:
            b.to(device)
        amp_dtype = self._amp_dtype(device)
        autocast = lambda: torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)  # noqa: E731
        with torch.no_grad(), autocast():
            targets = [t.to(torch.float32) for t in map_hidden_states(lambda inp: self._forward(blocks, inp), float_inputs)]
        wrappers = {n: WrapperLinear(m, specs[n], self.enable_minmax_tuning) for n, m in layers.items()}
        for n, w in wrappers.items():
            set_module(model, n, w)
        try:
            samples = _Samples(q_inputs if self.use_quant_input else float_inputs, targets)
            before, after = self._optimize(blocks, list(wrappers.values()), samples, autocast)
            with torch.no_grad():
                for n, w in wrappers.items():
                    results[n] = nn.Parameter(w.quantized(self.layout).to(homes[0]), requires_grad=False)
        finally:
            for n, w in wrappers.items():
                set_module(model, n, w.layer)
        # the following blocks see this block's quantized outputs: dequantized weights in place for now
        originals = {n: m.weight for n, m in layers.items()}
        for n, m in layers.items():
            m.weight = nn.Parameter(results[n].dequantize().to(device), requires_grad=False)
        try:
            with torch.no_grad(), autocast():
                outputs = map_hidden_states(lambda inp: self._forward(blocks, inp), q_inputs)
                next_q = [with_hidden_states(inp, out.to(inp.args[0].dtype)) for inp, out in zip(q_inputs, outputs)]
        finally:
            for n, m in layers.items():
                m.weight = originals[n]
        next_float = [with_hidden_states(inp, t.to(inp.args[0].dtype)) for inp, t in zip(float_inputs, targets)]
        for b, home in zip(blocks, homes):
            b.to(home)
        return next_float, next_q, before, after

    def _optimize(self, blocks, wrappers: List[WrapperLinear], samples: _Samples, autocast):
        params = [p for w in wrappers for p in w.tuned()]
        if not params or self.iters == 0:
            return float("nan"), float("nan")
        optimizer = self._optimizers(wrappers)
        scheduler = self.lr_scheduler(optimizer) if (self.lr_scheduler and optimizer) else None
        generator = torch.Generator().manual_seed(self.seed)
        n, bs = len(samples), min(self.bs, len(samples))
        best_loss, best_state, first_loss, since_best = math.inf, None, None, 0
        for step in range(self.iters):
            total = 0.0
            for _ in range(self.gradient_accumulate_steps):
                if self.sampler == "rand":
                    indices = torch.randperm(n, generator=generator)[:bs].tolist()
                else:
                    start = (step * bs) % n
                    indices = [(start + i) % n for i in range(bs)]
                for inp, target, count in samples.batches(indices):
                    with autocast(), _training_attention(self._device, self._amp_dtype(self._device)):
                        out = self._forward(blocks, move_to(inp, self._device))
                        loss = F.mse_loss(out.to(torch.float32), target.to(self._device)) * (count / bs)
                        (loss / self.gradient_accumulate_steps).backward()
                    total += loss.item() / self.gradient_accumulate_steps
            first_loss = total if first_loss is None else first_loss
            if total < best_loss:
                best_loss, since_best = total, 0
                best_state = [p.detach().clone() for p in params]
            else:
                since_best += 1
            decay = 1.0 - step / self.iters
            if optimizer is None:
                sign_sgd_step([w.value for w in wrappers], self.lr * decay)
                sign_sgd_step([p for w in wrappers for p in (w.min_scale, w.max_scale) if p is not None], self.minmax_lr * decay)
            else:
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for p in params:
                p.grad = None
            for w in wrappers:
                w.clamp_factors()
            if self.dynamic_max_gap > 0 and since_best >= self.dynamic_max_gap:
                break
        if not self.not_use_mse and best_state is not None:
            with torch.no_grad():
                for p, best in zip(params, best_state):
                    p.copy_(best)
        return first_loss, best_loss


def _training_attention(device: torch.device, amp_dtype: Optional[torch.dtype]):
    """The attention kernels for the tuning steps: on CPU under bf16 autocast, SDPA's math backend (forward
    + backward of a (8, 12, 128, 32) bf16 attention: 14 ms against 23 ms for the CPU flash kernel, 2 cores);
    elsewhere the default choice."""
    if device.type == "cpu" and amp_dtype == torch.bfloat16:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


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
    try:
        import datasets
    except ImportError:
        raise CalibrationError(
            "no calibration data: pass dataloader=... or texts=[...] (loading a hub dataset needs the "
            "'datasets' package and network access)"
        ) from None
    data = datasets.load_dataset(name, split=split)
    return [row["text"] for row in data.select(range(min(len(data), n_samples)))]
