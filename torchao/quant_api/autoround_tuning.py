"""AutoRound's tuning loop: the block-by-block signed-gradient optimisation, as functions of a frozen
AutoRoundConfig. ``tune_autoround(model, config, layers)`` returns the new weights and a report of the
block losses; the model is left as it was (``quantize_`` swaps the weights in).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from torchao.quant_api.autoround_math import LayerSpec, WrapperLinear, sign_sgd_step
from torchao.quant_api.calibration import (
    BlockInput,
    CalibrationError,
    blocks_are_chained,
    calibration_batches,
    capture_block_inputs,
    get_module,
    map_hidden_states,
    move_to,
    run_block,
    set_module,
    stackable,
    with_hidden_states,
)

if TYPE_CHECKING:
    from torchao.quant_api.autoround import AutoRoundConfig

__all__ = ["AutoRoundReport", "BlockTuner", "tune_autoround"]

log = logging.getLogger(__name__)


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


@dataclass
class AutoRoundReport:
    """What a tuning run measured: per tuned block (its first name), the loss (block output MSE) of the
    first step and the best one; and the device it ran on."""

    device: torch.device
    block_losses: Dict[str, Tuple[float, float]] = field(default_factory=dict)


def tune_autoround(model: nn.Module, config: "AutoRoundConfig",
                   layers: Dict[str, nn.Module]) -> Tuple[Dict[str, nn.Parameter], AutoRoundReport]:
    """AutoRound weights for ``layers`` (fully qualified name -> Linear): tuned block by block, round-to-
    nearest for layers outside the blocks. Returns (weights, report); the model is left as it was."""
    block_names = config.block_names_of(model)
    specs = {n: config.layer_spec(n) for n in layers}
    in_block = {n: config.block_of(n, block_names) for n in layers}
    batches = calibration_batches(config.calibration, config.tokenizer, config.seqlen, config.n_samples, model)

    torch.manual_seed(config.seed)
    blocks = [get_module(model, n) for n in block_names]
    home = next((p.device for p in model.parameters()), torch.device("cpu"))
    tuner = BlockTuner(config, torch.device(config.device) if config.device is not None else home)
    report = AutoRoundReport(tuner.device)
    store = torch.device("cpu") if config.low_gpu_mem_usage else tuner.device
    float_inputs = capture_block_inputs(model, blocks[0], batches, store)
    if not blocks_are_chained(model, blocks, batches[0]):
        raise CalibrationError("AutoRound needs each block's output to be the next block's input; "
                               "wrap the residual into the blocks or pass block_names")
    q_inputs = float_inputs
    results: Dict[str, nn.Parameter] = {}
    groups = [block_names[i:i + config.n_blocks] for i in range(0, len(block_names), config.n_blocks)]
    bar = tqdm(groups, desc="AutoRound", unit="block", disable=not config.progress)
    for names in bar:
        group_blocks = [get_module(model, n) for n in names]
        group_layers = {n: m for n, m in layers.items() if in_block[n] in names}
        float_inputs, q_inputs, before, after = tuner.tune_blocks(
            model, names, group_blocks, group_layers, specs, float_inputs, q_inputs, results)
        report.block_losses[names[0]] = (before, after)
        bar.set_postfix_str(f"loss {before:.3g} -> {after:.3g}")
        log.info("AutoRound %s: loss %.4g -> %.4g", names[0] + (".." + names[-1] if len(names) > 1 else ""),
                 before, after)
    for n, m in layers.items():
        if in_block[n] is None:
            results[n] = nn.Parameter(tuner.rtn(m, specs[n]), requires_grad=False)
    return results, report


class BlockTuner:
    """Tunes the wrapped Linear layers of one group of blocks on ``device`` as ``config`` says."""

    def __init__(self, config: "AutoRoundConfig", device: torch.device):
        self.config, self.device = config, device

    def rtn(self, layer: nn.Linear, spec: LayerSpec):
        return WrapperLinear(layer, spec, enable_minmax_tuning=False).quantized(self.config.layout)

    def _optimizers(self, wrappers: List[WrapperLinear]):
        values = [w.value for w in wrappers]
        factors = [p for w in wrappers for p in (w.min_scale, w.max_scale) if p is not None]
        if self.config.optimizer == "sign_sgd":
            return None
        config = self.config
        opt_cls = config.optimizer if isinstance(config.optimizer, type) else getattr(torch.optim, str(config.optimizer))
        groups = [{"params": values, "lr": config.lr}] + ([{"params": factors, "lr": config.minmax_lr}] if factors else [])
        return opt_cls(groups, lr=config.lr)

    def _amp_dtype(self, device: torch.device) -> Optional[torch.dtype]:
        """The autocast dtype of the block forwards (None: amp off)."""
        if not self.config.amp:
            return None
        return self.config.amp_dtype or (torch.bfloat16 if device.type == "cpu" else torch.float16)

    def _forward(self, blocks, inp: BlockInput):
        hidden = None
        for block in blocks:
            if hidden is not None:
                inp = with_hidden_states(inp, hidden)
            hidden = run_block(block, inp, self.device)
        return hidden

    def tune_blocks(self, model, names, blocks, layers, specs, float_inputs, q_inputs, results):
        device = self.device
        homes = [next((p.device for p in b.parameters()), device) for b in blocks]
        for b in blocks:
            b.to(device)
        amp_dtype = self._amp_dtype(device)
        autocast = lambda: torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)  # noqa: E731
        with torch.no_grad(), autocast():
            targets = [t.to(torch.float32) for t in map_hidden_states(lambda inp: self._forward(blocks, inp), float_inputs)]
        wrappers = {n: WrapperLinear(m, specs[n], self.config.enable_minmax_tuning) for n, m in layers.items()}
        for n, w in wrappers.items():
            set_module(model, n, w)
        try:
            samples = _Samples(q_inputs if self.config.use_quant_input else float_inputs, targets)
            before, after = self.optimize(blocks, list(wrappers.values()), samples, autocast)
            with torch.no_grad():
                for n, w in wrappers.items():
                    results[n] = nn.Parameter(w.quantized(self.config.layout).to(homes[0]), requires_grad=False)
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

    def optimize(self, blocks, wrappers: List[WrapperLinear], samples: _Samples, autocast):
        params = [p for w in wrappers for p in w.tuned()]
        if not params or self.config.iters == 0:
            return float("nan"), float("nan")
        optimizer = self._optimizers(wrappers)
        scheduler = self.config.lr_scheduler(optimizer) if (self.config.lr_scheduler and optimizer) else None
        generator = torch.Generator().manual_seed(self.config.seed)
        n, bs = len(samples), min(self.config.bs, len(samples))
        best_loss, best_state, first_loss, since_best = math.inf, None, None, 0
        for step in range(self.config.iters):
            total = 0.0
            for _ in range(self.config.gradient_accumulate_steps):
                if self.config.sampler == "rand":
                    indices = torch.randperm(n, generator=generator)[:bs].tolist()
                else:
                    start = (step * bs) % n
                    indices = [(start + i) % n for i in range(bs)]
                for inp, target, count in samples.batches(indices):
                    with autocast(), _training_attention(self.device, self._amp_dtype(self.device)):
                        out = self._forward(blocks, move_to(inp, self.device))
                        loss = F.mse_loss(out.to(torch.float32), target.to(self.device)) * (count / bs)
                        (loss / self.config.gradient_accumulate_steps).backward()
                    total += loss.item() / self.config.gradient_accumulate_steps
            first_loss = total if first_loss is None else first_loss
            if total < best_loss:
                best_loss, since_best = total, 0
                best_state = [p.detach().clone() for p in params]
            else:
                since_best += 1
            decay = 1.0 - step / self.config.iters
            if optimizer is None:
                sign_sgd_step([w.value for w in wrappers], self.config.lr * decay)
                sign_sgd_step([p for w in wrappers for p in (w.min_scale, w.max_scale) if p is not None],
                              self.config.minmax_lr * decay)
            else:
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for p in params:
                p.grad = None
            for w in wrappers:
                w.clamp_factors()
            if self.config.dynamic_max_gap > 0 and since_best >= self.config.dynamic_max_gap:
                break
        if not self.config.not_use_mse and best_state is not None:
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


