"""GPTQ: the single-layer algorithm against a float64 reference, error vs RTN, the model flow, bad inputs."""

import copy
import unittest
import warnings

import torch
import torch.nn as nn
from expecttest import TestCase
from testbed import tiny_llama

import torchao  # noqa: F401
from torchao.dtypes import AffineQuantizedTensor
from torchao.quant_api.calibration import CalibrationError, calibration_batches, get_block_names
from torchao.quant_api.gptq import HessianAccumulator, gptq_quantize_weight
from torchao.quant_api.weight_format import IntFormat
from torchao.quantization import Int4WeightOnlyGPTQQuantizer, gptq, quantize_


def reference_gptq(w, h, fmt, group, percdamp):
    """Textbook GPTQ in float64: one column at a time, the full inverse Hessian updated by hand
    (no Cholesky, no lazy batches), qparams at each group boundary from the updated weights."""
    w = w.double().clone()
    h = h.double().clone()
    n, k = w.shape
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += percdamp * torch.diagonal(h).mean() * torch.eye(k, dtype=torch.float64)
    hinv = torch.linalg.inv(h)
    q = torch.zeros(n, k, dtype=torch.int64)
    for j in range(k):
        if j % group == 0:
            cols = w[:, j:j + group]
            if fmt.sym:
                scale = torch.maximum(-cols.amin(1).clamp(max=0), cols.amax(1).clamp(min=0)) / ((fmt.quant_max - fmt.quant_min) / 2)
                scale = scale.clamp(min=1e-8)
                zero = torch.zeros(n, dtype=torch.float64)
            else:
                lo, hi = cols.amin(1).clamp(max=0), cols.amax(1).clamp(min=0)
                scale = ((hi - lo) / (fmt.quant_max - fmt.quant_min)).clamp(min=1e-8)
                zero = torch.clamp(fmt.quant_min - torch.round(lo / scale), fmt.quant_min, fmt.quant_max)
        qj = torch.clamp(torch.round(w[:, j] * (1.0 / scale)) + zero, fmt.quant_min, fmt.quant_max)
        q[:, j] = qj.long()
        err = (w[:, j] - (qj - zero) * scale) / hinv[j, j]
        # remove column j: update the remaining weights and the inverse of the remaining Hessian
        w[:, j + 1:] -= err.unsqueeze(1) * hinv[j, j + 1:].unsqueeze(0)
        hinv[j + 1:, j + 1:] -= torch.outer(hinv[j + 1:, j], hinv[j, j + 1:]) / hinv[j, j]
    return q


def correlated_inputs(rows, k, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=gen) / k**0.5 + torch.eye(k)
    return torch.randn(rows, k, generator=gen) @ mix * torch.linspace(0.2, 3.0, k)


def hessian_of(x):
    acc = HessianAccumulator(x.shape[1], "cpu")
    for chunk in x.split(7):
        acc.add(chunk)
    return acc.hessian


class TestSingleLayer(TestCase):
    def test_matches_float64_reference_exactly(self):
        torch.manual_seed(0)
        for bits, sym, group in [(4, False, 16), (3, True, 32), (2, False, 64), (8, False, 64)]:
            fmt = IntFormat.for_bits(bits, sym)
            w = torch.randn(12, 64, dtype=torch.float64)
            h = hessian_of(correlated_inputs(200, 64).double()).double()
            q, scale, zero = gptq_quantize_weight(w, h, fmt, group, blocksize=16, compute_dtype=torch.float64,
                                                  scale_dtype=torch.float64)
            ref = reference_gptq(w, h, fmt, group, 0.01)
            self.assertTrue(torch.equal(q.long(), ref), msg=f"bits={bits} sym={sym} group={group}")

    def test_hessian_accumulator(self):
        x = torch.randn(50, 8)
        assert torch.allclose(hessian_of(x), 2 / 50 * x.t() @ x, atol=1e-5)

    def test_beats_rtn_on_correlated_inputs(self):
        torch.manual_seed(0)
        x = correlated_inputs(512, 128)
        w = torch.randn(32, 128)
        fmt = IntFormat.for_bits(3)
        q, scale, zero = gptq_quantize_weight(w, hessian_of(x), fmt, 32)
        rep = lambda t: t.repeat_interleave(32, 1)  # noqa: E731
        w_gptq = (q.float() - rep(zero)) * rep(scale)
        rtn = torchao.qtensor.to_aq(w, fmt.mapping_type, (1, 32), fmt.target_dtype, eps=1e-8).dequantize()
        err = lambda wq: ((x @ (wq - w).t()) ** 2).mean().item()  # noqa: E731
        self.assertLess(err(w_gptq), 0.85 * err(rtn))

    def test_dead_columns(self):
        x = correlated_inputs(256, 64)
        x[:, [3, 40]] = 0
        w = torch.randn(8, 64)
        q, scale, zero = gptq_quantize_weight(w, hessian_of(x), IntFormat.for_bits(4), 32)
        deq = (q.float() - zero.repeat_interleave(32, 1)) * scale.repeat_interleave(32, 1)
        self.assertTrue(torch.allclose(deq[:, [3, 40]], torch.zeros(8, 2), atol=1e-6))
        self.assertFalse(bool(torch.isnan(deq).any()))

    def test_singular_hessian_is_dampened_not_fatal(self):
        x = torch.randn(3, 64)  # rank 3
        with self.assertLogs("torchao.quant_api.gptq", level="WARNING") as logs:
            q, _, _ = gptq_quantize_weight(torch.randn(8, 64), hessian_of(x), IntFormat.for_bits(4), 32, percdamp=0.0)
        self.assertIn("retrying", logs.output[0])
        self.assertEqual(tuple(q.shape), (8, 64))

    def test_act_order_with_groups_keeps_original_groups(self):
        torch.manual_seed(0)
        x = correlated_inputs(512, 128)
        w = torch.randn(16, 128)
        fmt = IntFormat.for_bits(4)
        q, scale, zero = gptq_quantize_weight(w, hessian_of(x), fmt, 32, act_order=True)
        # each column uses the qparams of its own (original-order) group, so plain dequantization is right
        deq = (q.float() - zero.repeat_interleave(32, 1)) * scale.repeat_interleave(32, 1)
        err = ((x @ (deq - w).t()) ** 2).mean().item()
        rtn = torchao.qtensor.to_aq(w, fmt.mapping_type, (1, 32), fmt.target_dtype, eps=1e-8).dequantize()
        self.assertLess(err, ((x @ (rtn - w).t()) ** 2).mean().item())


class Stack(nn.Module):
    """A plain stack of residual MLP blocks."""

    def __init__(self, d=64, depth=3):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d)) for _ in range(depth))
        self.head = nn.Linear(d, 8)

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


class TestModelFlow(TestCase):
    def test_plain_stack(self):
        torch.manual_seed(0)
        model = Stack()
        self.assertEqual(get_block_names(model), ["blocks.0", "blocks.1", "blocks.2"])
        data = correlated_inputs(160, 64)  # one distribution: calibrate on 128 rows, evaluate on 32 others
        calib, x = list(data[:128].split(32)), data[128:]
        ref = model(x)
        rtn = copy.deepcopy(model)
        quantize_(rtn, torchao.quantization.int4_weight_only(group_size=32),
                  filter_fn=lambda m, n: isinstance(m, nn.Linear) and n.startswith("blocks"))
        quantize_(model, gptq(calib, bits=4, group_size=32, progress=False))
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear):
                self.assertEqual(isinstance(m.weight, AffineQuantizedTensor), name.startswith("blocks"), msg=name)
        self.assertLess((model(x) - ref).norm(), (rtn(x) - ref).norm())

    def test_tiny_llama_and_seed_class(self):
        model = tiny_llama()
        ids = torch.randint(0, 128, (4, 32))
        with torch.no_grad():
            ref = model(ids).logits
        quantizer = Int4WeightOnlyGPTQQuantizer(blocksize=128, percdamp=0.01, groupsize=32, progress=False)
        out_model = quantizer.quantize(model, list(ids))
        self.assertIs(out_model, model)
        layer = model.model.layers[1].mlp.down_proj.weight
        self.assertIsInstance(layer, AffineQuantizedTensor)
        self.assertEqual(layer.spec.layout, "int4_cpu")
        self.assertNotIsInstance(model.lm_head.weight, AffineQuantizedTensor)  # outside the blocks
        with torch.no_grad():
            out = model(ids).logits
        sqnr = 20 * torch.log10(ref.norm() / (ref - out).norm())
        self.assertGreater(sqnr.item(), 15)
        torch._dynamo.reset()
        with torch.no_grad():
            compiled = torch.compile(model, fullgraph=True)(ids).logits
        self.assertGreater((20 * torch.log10(out.norm() / (out - compiled).norm())).item(), 40)

    def test_dataloader_and_explicit_blocks(self):
        model = tiny_llama()
        loader = torch.utils.data.DataLoader(torch.randint(0, 128, (6, 16)), batch_size=2)
        quantize_(model, gptq(loader, bits=8, group_size=None, block_names=["model.layers.1"], progress=False))
        self.assertNotIsInstance(model.model.layers[0].mlp.up_proj.weight, AffineQuantizedTensor)
        w = model.model.layers[1].mlp.up_proj.weight
        self.assertIsInstance(w, AffineQuantizedTensor)
        self.assertEqual((w.spec.block_size, w.spec.layout, w.spec.quant_min), ((1, 64), "plain", -128))

    def test_bad_inputs_change_nothing(self):
        model = tiny_llama()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with self.assertRaisesRegex(CalibrationError, "the calibration data is empty"):
            quantize_(model, gptq([], progress=False))
        with self.assertRaisesRegex(CalibrationError, "no transformer blocks found in Linear"):
            quantize_(nn.Linear(8, 8), gptq([torch.randn(2, 8)], progress=False))
        with self.assertRaisesRegex(CalibrationError, "calibration item 0: token ids span \\[1000, 1000\\], outside "
                                                      "the model's vocabulary of 128"):
            quantize_(model, gptq([torch.full((1, 8), 1000)], progress=False))
        with self.assertRaisesRegex(ValueError, "bits must be an integer in 1..8, got 9"):
            gptq([torch.randn(1)], bits=9)
        for k, v in model.state_dict().items():
            self.assertTrue(torch.equal(v, before[k]), msg=k)

    def test_texts_need_enough_tokens(self):
        class Tok:
            def __call__(self, text, return_tensors=None):
                return type("Enc", (), {"input_ids": torch.arange(len(text.split())).unsqueeze(0)})()

        self.assertEqual(len(calibration_batches(["a b c d e f"], Tok(), seqlen=2)), 3)
        with self.assertRaisesRegex(CalibrationError, "calibration text has 3 tokens, fewer than one sequence of seqlen=8"):
            calibration_batches(["a b c"], Tok(), seqlen=8)


if __name__ == "__main__":
    unittest.main()
