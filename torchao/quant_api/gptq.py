"""GPTQ (Frantar et al., 2022): Hessian-guided rounding, layer by layer, block by block.

``gptq_quantize_weight`` quantizes one weight given H = 2/N * sum x x^T of its inputs; ``gptq(...)``
is the model-level config for ``quantize_`` (and ``Int4WeightOnlyGPTQQuantizer`` the seed's class
form). The result is AffineQuantizedTensors in the kernel layouts, so every kernel, torch.compile and
export apply unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from torchao.qtensor import choose_qparams_affine
from torchao.quant_api.apply import quantize_
from torchao.quant_api.configs import AOBaseConfig
from torchao.quant_api.calibration import (
    CalibrationError,
    blocks_are_chained,
    calibration_batches,
    capture_block_inputs,
    get_block_names,
    get_module,
    map_hidden_states,
    run_block,
    with_hidden_states,
)
from torchao.quant_api.weight_format import IntFormat, quantized_weight

__all__ = ["gptq_quantize_weight", "HessianAccumulator", "GPTQConfig", "gptq", "Int4WeightOnlyGPTQQuantizer"]

log = logging.getLogger(__name__)


class HessianAccumulator:
    """Forward hook state: H = 2/N * sum over rows x of x x^T (float32), for a Linear's inputs (..., K)."""

    def __init__(self, in_features: int, device):
        self.hessian = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
        self.rows = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).to(torch.float32)
        n = x.shape[0]
        self.hessian *= self.rows / (self.rows + n)
        self.rows += n
        x = x * (2.0 / self.rows) ** 0.5
        self.hessian += x.t() @ x

    def hook(self, module, args, output) -> None:
        self.add(args[0].detach())


def _inverse_cholesky(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of H^-1, dampening H by percdamp * mean(diag H), raised until it works."""
    damp = percdamp
    diag_mean = torch.diagonal(hessian).mean()
    eye = torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)
    for _ in range(12):
        lower, info = torch.linalg.cholesky_ex(hessian + damp * diag_mean * eye)
        if info == 0:
            inv = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(inv, upper=True)
            if info == 0:
                return upper
        retry = max(damp * 10, 1e-4)
        log.warning("GPTQ: Hessian not positive definite with dampening %.3g; retrying with %.3g", damp, retry)
        damp = retry
    raise torch.linalg.LinAlgError("GPTQ: Hessian stays singular even with heavy dampening")


def _group_qparams(w: torch.Tensor, fmt: IntFormat, scale_dtype: torch.dtype):
    """Scale and zero point, each (N,) in w.dtype, for the columns ``w`` (N, g); the scale is rounded to
    ``scale_dtype`` first, so that GPTQ's error feedback sees the values that will be stored."""
    scale, zero = choose_qparams_affine(
        w, fmt.mapping_type, (1, w.shape[1]), fmt.target_dtype, fmt.quant_min, fmt.quant_max,
        eps=1e-8, scale_dtype=scale_dtype, zero_point_dtype=torch.float32,
        zero_point_domain=fmt.zero_point_domain,
    )
    zero = torch.zeros_like(scale, dtype=torch.float32) if zero is None else zero
    return scale.to(w.dtype), zero.to(w.dtype)


def gptq_quantize_weight(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    fmt: IntFormat,
    group_size: Optional[int] = None,
    percdamp: float = 0.01,
    blocksize: int = 128,
    act_order: bool = False,
    static_groups: bool = False,
    scale_dtype: Optional[torch.dtype] = None,
    compute_dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ on one weight.

    weight: (N, K) float; hessian: (K, K); group_size: columns per scale (None: per channel).
    act_order processes columns by descending diag(H); with groups it implies static_groups (qparams
    from the original weights, per original column group), so no column index is needed later.
    Returns (int_data (N, K) in fmt's storage dtype, scale (N, K // g) in scale_dtype, zero_point
    (N, K // g) float32, zeros for symmetric formats).
    """
    n, k = weight.shape
    group = group_size or k
    if k % group:
        raise ValueError(f"in_features {k} is not divisible by group_size {group}")
    scale_dtype = scale_dtype or weight.dtype
    w = weight.detach().to(compute_dtype).clone()
    h = hessian.detach().to(compute_dtype).clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0

    groups = k // group
    scales = torch.empty(n, groups, dtype=compute_dtype, device=w.device)
    zeros = torch.empty(n, groups, dtype=compute_dtype, device=w.device)
    static = static_groups or (act_order and groups > 1)
    if static:
        for g in range(groups):
            scales[:, g], zeros[:, g] = _group_qparams(w[:, g * group:(g + 1) * group], fmt, scale_dtype)

    perm = torch.argsort(torch.diagonal(h), descending=True) if act_order else torch.arange(k, device=w.device)
    w, h = w[:, perm], h[perm][:, perm]
    hinv = _inverse_cholesky(h, percdamp)

    q = torch.empty(n, k, dtype=torch.int32, device=w.device)
    for i1 in range(0, k, blocksize):
        i2 = min(i1 + blocksize, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            g = int(perm[col]) // group
            if not static and col % group == 0:
                current = torch.cat([w1[:, i:], w[:, i2:]], dim=1)[:, :group]
                scales[:, g], zeros[:, g] = _group_qparams(current, fmt, scale_dtype)
            s, z = scales[:, g], zeros[:, g]
            qcol = fmt.quantize_column(w1[:, i], s, z)
            q[:, col] = qcol
            err = (w1[:, i] - fmt.dequantize_column(qcol, s, z)) / hinv1[i, i]
            w1[:, i:] -= err.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]

    int_data = torch.empty_like(q)
    int_data[:, perm] = q
    return int_data.to(fmt.storage_dtype), scales.to(scale_dtype), zeros.to(torch.float32)


# ---- model level ----------------------------------------------------------------------------------


@dataclass
class GPTQConfig(AOBaseConfig):
    """Model-level config: ``quantize_(model, gptq(calibration, bits=4, group_size=128))``.

    calibration: token-id tensors, a dataloader, or texts (with ``tokenizer``), see calibration_batches.
    bits: 2, 3, 4 or 8; group_size: None or -1 for per channel; sym: symmetric (no zero point).
    block_names: the transformer blocks (default: found with get_block_names).
    device: where each block is quantized (default: where the model is); cached activations stay on CPU.
    layout: None picks the kernel layout for the device. progress: show a bar per block.
    """

    calibration: object
    bits: int = 4
    group_size: Optional[int] = 128
    sym: bool = False
    percdamp: float = 0.01
    blocksize: int = 128
    act_order: bool = False
    static_groups: bool = False
    tokenizer: object = None
    seqlen: int = 2048
    n_samples: Optional[int] = 128
    block_names: Optional[List[str]] = None
    device: Optional[torch.device] = None
    layout: Optional[str] = None
    progress: bool = True
    fmt: IntFormat = field(init=False)

    def __post_init__(self):
        self.fmt = IntFormat.for_bits(self.bits, self.sym)
        if self.group_size == -1:
            self.group_size = None

    def unsupported_reason(self, weight: torch.Tensor) -> Optional[str]:
        if weight.dim() != 2 or not weight.is_floating_point():
            return f"needs a 2-D float weight, got {tuple(weight.shape)} {weight.dtype}"
        if self.group_size and weight.shape[1] % self.group_size:
            return f"in_features {weight.shape[1]} is not divisible by group_size {self.group_size}"
        return None

    def _block_names(self, model: nn.Module) -> List[str]:
        names = self.block_names if self.block_names is not None else get_block_names(model)
        if not names:
            raise CalibrationError(
                f"no transformer blocks found in {type(model).__name__}; pass block_names=[...] explicitly"
            )
        return names

    def layers_to_quantize(self, model: nn.Module, targets: Dict[str, nn.Module]) -> Dict[str, nn.Module]:
        """The selected Linear layers inside the model's blocks (GPTQ calibrates block by block)."""
        prefixes = tuple(name + "." for name in self._block_names(model))
        return {fqn: m for fqn, m in targets.items() if isinstance(m, nn.Linear) and fqn.startswith(prefixes)}

    def unsupported_layers(self, layers: Dict[str, nn.Module]) -> Dict[str, str]:
        return {fqn: r for fqn, m in layers.items() if (r := self.unsupported_reason(m.weight))}

    def quantized_weights(self, model: nn.Module, layers: Dict[str, nn.Module]) -> Dict[str, nn.Parameter]:
        """GPTQ weights for ``layers``, block by block; the model is left as it was."""
        block_names = self._block_names(model)
        blocks = [get_module(model, name) for name in block_names]
        batches = calibration_batches(self.calibration, self.tokenizer, self.seqlen, self.n_samples, model)
        offload = torch.device("cpu")
        inputs = capture_block_inputs(model, blocks[0], batches, offload)
        chained = blocks_are_chained(model, blocks, batches[0])

        originals: Dict[str, nn.Parameter] = {}
        results: Dict[str, nn.Parameter] = {}
        try:
            bar = tqdm(list(zip(block_names, blocks)), desc="GPTQ", unit="block", disable=not self.progress)
            for i, (name, block) in enumerate(bar):
                if i > 0 and not chained:  # e.g. a residual outside the blocks: re-run the quantized prefix
                    inputs = capture_block_inputs(model, block, batches, offload)
                in_block = {fqn: m for fqn, m in layers.items() if fqn.startswith(name + ".")}
                inputs = self._quantize_block(block, in_block, inputs, originals, results)
        finally:  # the next blocks saw dequantized weights; quantize_ swaps the results in
            for fqn, param in originals.items():
                get_module(model, fqn).weight = param
        return results

    def _quantize_block(self, block, layers, inputs, originals, results):
        home = next((p.device for p in block.parameters()), torch.device("cpu"))
        device = torch.device(self.device) if self.device is not None else home
        block.to(device)
        with torch.no_grad():
            accumulators = {fqn: HessianAccumulator(m.in_features, device) for fqn, m in layers.items()}
            handles = [m.register_forward_hook(accumulators[fqn].hook) for fqn, m in layers.items()]
            try:
                for inp in inputs:
                    run_block(block, inp, device)
            finally:
                for h in handles:
                    h.remove()
            for fqn, layer in layers.items():
                int_data, scale, zero = gptq_quantize_weight(
                    layer.weight, accumulators[fqn].hessian, self.fmt, self.group_size, self.percdamp,
                    self.blocksize, self.act_order, self.static_groups,
                )
                qweight = quantized_weight(int_data, scale, zero, self.fmt, self.group_size or layer.in_features,
                                           layer.weight.dtype, self.layout)
                originals[fqn] = layer.weight
                results[fqn] = nn.Parameter(qweight.to(home), requires_grad=False)
                # the next blocks see this block's quantized outputs
                layer.weight = nn.Parameter(qweight.dequantize(), requires_grad=False)
            hidden = map_hidden_states(lambda inp: run_block(block, inp, device), inputs)
            outputs = [with_hidden_states(inp, h) for inp, h in zip(inputs, hidden)]
        block.to(home)
        return outputs


def gptq(calibration, bits: int = 4, group_size: Optional[int] = 128, **kwargs) -> GPTQConfig:
    """GPTQ config for ``quantize_``; see GPTQConfig for the options."""
    return GPTQConfig(calibration, bits=bits, group_size=group_size, **kwargs)


class Int4WeightOnlyGPTQQuantizer:
    """The seed README's class form: ``Int4WeightOnlyGPTQQuantizer(blocksize, percdamp, groupsize).quantize(model, inputs)``.

    4-bit asymmetric weights in groups of ``groupsize``; ``inputs`` is any calibration form (token-id
    tensors, tuples of model arguments, a dataloader). Returns the model, quantized in place.
    """

    def __init__(self, blocksize: int = 128, percdamp: float = 0.01, groupsize: int = 64, **kwargs):
        self.blocksize, self.percdamp, self.groupsize, self.kwargs = blocksize, percdamp, groupsize, kwargs

    def quantize(self, model: nn.Module, inputs, filter_fn=None) -> nn.Module:
        config = gptq(inputs, bits=4, group_size=self.groupsize, blocksize=self.blocksize,
                      percdamp=self.percdamp, **self.kwargs)
        quantize_(model, config, filter_fn)
        return model
