"""AutoRound: the rounding / clipping math against float64, RTN equivalence at V=0, the tuning loop,
best-parameter selection, per-layer overrides, the seed class API and bad inputs."""

import unittest

import torch
import torch.nn as nn
from expecttest import TestCase
from testbed import tiny_llama

import torchao  # noqa: F401
from torchao.dtypes import AffineQuantizedTensor
from torchao.quant_api.autoround import AutoRoundConfig, LayerSpec, WrapperLinear, tune_autoround
from torchao.quant_api.autoround_tuning import BlockTuner, _Samples
from torchao.quant_api.autoround_math import quant_weight, quant_weight_w_scale, round_ste
from torchao.quant_api.calibration import CalibrationError
from torchao.quantization import AutoOPTRound, AutoRound, autoround, intx_weight_only, quantize_


def reference_qdq(w, bits, group, sym, v, min_scale, max_scale, full_range=True):
    """float64, one group at a time, written out."""
    w = w.double()
    n, k = w.shape
    if sym:
        qmin = -(2 ** (bits - 1)) if full_range else -(2 ** (bits - 1) - 1)
        qmax = 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2**bits - 1
    out = torch.empty_like(w)
    q_all = torch.empty(n, k, dtype=torch.int64)
    for r in range(n):
        for g in range(k // group):
            cols = slice(g * group, (g + 1) * group)
            x = w[r, cols]
            lo = min(x.min().item(), 0.0) * min_scale[r, g].item()
            hi = max(x.max().item(), 0.0) * max_scale[r, g].item()
            scale = max(max(-lo, hi) / ((qmax - qmin) / 2) if sym else (hi - lo) / (qmax - qmin), 1e-8)
            zp = 0.0 if sym else min(max(qmin - round(lo / scale), qmin), qmax)
            q = torch.clamp(torch.round(x / scale + v[r, cols].double()) + zp, qmin, qmax)
            q_all[r, cols] = q.long()
            out[r, cols] = (q - zp) * scale
    return out, q_all


class TestMath(TestCase):
    def test_round_ste(self):
        x = torch.tensor([0.4, 1.6, -2.5], requires_grad=True)
        y = round_ste(x)
        y.sum().backward()
        self.assertEqual(y.tolist(), [0.0, 2.0, -2.0])
        self.assertEqual(x.grad.tolist(), [1.0, 1.0, 1.0])

    def test_against_float64_reference(self):
        torch.manual_seed(0)
        for bits, group, sym in [(4, 16, False), (3, 32, True), (2, 16, False), (8, 64, True)]:
            w = torch.randn(6, 64, dtype=torch.float64)
            v = torch.rand(6, 64) - 0.5
            mins, maxs = torch.rand(6, 64 // group) * 0.5 + 0.5, torch.rand(6, 64 // group) * 0.5 + 0.5
            qdq, scale, zp = quant_weight(w, bits, group, "sym" if sym else "asym", v, mins, maxs)
            ref, ref_q = reference_qdq(w, bits, group, sym, v, mins, maxs)
            torch.testing.assert_close(qdq.double(), ref, atol=1e-5, rtol=1e-5)
            q = torch.clamp(torch.round(w.float().reshape(6, -1, group) / scale.unsqueeze(-1) + v.reshape(6, -1, group))
                            + zp.unsqueeze(-1), ref_q.min(), ref_q.max()).reshape(6, 64)
            self.assertTrue(torch.equal(q.long(), ref_q), msg=f"bits={bits} sym={sym}")

    def test_gradients_reach_v_and_factors(self):
        w = torch.randn(4, 32)
        v = torch.zeros(4, 32, requires_grad=True)
        mins = torch.ones(4, 1, requires_grad=True)
        maxs = torch.ones(4, 1, requires_grad=True)
        qdq, _, _ = quant_weight(w, 4, 32, "asym", v, mins, maxs)
        (qdq - w).pow(2).sum().backward()
        self.assertTrue(all(t.grad is not None and t.grad.abs().sum() > 0 for t in (v, mins, maxs)))

    def test_zero_perturbation_is_rtn_exactly(self):
        torch.manual_seed(0)
        for dtype in (torch.float32, torch.bfloat16):
            for bits, group, sym in [(4, 32, False), (3, 64, False), (4, 32, True), (8, -1, False), (2, 32, True)]:
                layer = nn.Linear(64, 48).to(dtype)
                wrapped = WrapperLinear(layer, LayerSpec(bits, group, "sym" if sym else "asym", full_range=True)).quantized(None)
                rtn = nn.Linear(64, 48).to(dtype)
                rtn.weight = nn.Parameter(layer.weight.detach().clone())
                quantize_(rtn, intx_weight_only(bits, None if group == -1 else group, sym))
                int_a, scale_a, _ = wrapped.get_plain()
                int_b, scale_b, _ = rtn.weight.get_plain()
                self.assertTrue(torch.equal(int_a, int_b), msg=f"{dtype} bits={bits} g={group} sym={sym}")
                self.assertTrue(torch.equal(scale_a, scale_b))
                self.assertTrue(torch.equal(wrapped.dequantize(), rtn.weight.dequantize()))

    def test_quant_weight_w_scale(self):
        w = torch.randn(4, 64)
        _, scale, zp = quant_weight(w, 4, 32)
        q = quant_weight_w_scale(w, scale, zp, 32)
        self.assertTrue(bool((q >= 0).all() and (q <= 15).all()))


class ResidualBlock(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.up = nn.Linear(d, 2 * d)
        self.down = nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


class Chain(nn.Module):
    def __init__(self, depth=2):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(ResidualBlock() for _ in range(depth))
        self.head = nn.Linear(64, 8)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def calib(n=16, rows=8):
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(rows, 64, generator=gen) for _ in range(n)]


class TestTuning(TestCase):
    def test_loss_decreases_and_beats_rtn(self):
        model = Chain()
        data = calib()
        x = torch.randn(64, 64)
        ref = model(x)
        rtn = Chain()
        quantize_(rtn, intx_weight_only(2, 32), filter_fn=lambda m, n: isinstance(m, nn.Linear) and n.startswith("layers"))
        config = autoround(data, bits=2, group_size=32, iters=60, bs=4, n_samples=16, amp=False, progress=False)
        layers = config.layers_to_quantize(model, {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        _, report = tune_autoround(model, config, layers)
        self.assertEqual(len(report.block_losses), 2)
        for name, (before, after) in report.block_losses.items():
            self.assertLess(after, 0.8 * before, msg=name)
        quantize_(model, config)
        self.assertNotIsInstance(model.head.weight, AffineQuantizedTensor)  # outside the blocks: off by default
        self.assertLess((model(x) - ref).norm(), (rtn(x) - ref).norm())

    def test_best_parameters_are_kept(self):
        torch.manual_seed(0)
        block = ResidualBlock()
        inputs = calib(4)
        from torchao.quant_api.calibration import BlockInput

        cached = [BlockInput((t,), {}) for t in inputs]
        with torch.no_grad():
            targets = [block(t) for t in inputs]
        for keep_last in (False, True):
            config = AutoRoundConfig(inputs, bits=2, group_size=32, iters=25, bs=4, n_samples=4, amp=False,
                                     lr=0.2, not_use_mse=keep_last, progress=False)
            tuner = BlockTuner(config, torch.device("cpu"))
            wrappers = [WrapperLinear(block.up, LayerSpec(2, 32)), WrapperLinear(block.down, LayerSpec(2, 32))]
            block.up, block.down = wrappers
            try:
                _, best = tuner.optimize([block], wrappers, _Samples(cached, targets), lambda: torch.autocast("cpu", enabled=False))
                with torch.no_grad():
                    final = sum(nn.functional.mse_loss(block(t), y).item() for t, y in zip(inputs, targets)) / 4
            finally:
                block.up, block.down = wrappers[0].layer, wrappers[1].layer
            if keep_last:
                self.assertNotAlmostEqual(final, best, places=5)  # the last iterate, not the restored best
            else:
                self.assertAlmostEqual(final, best, places=5)

    def test_weight_config_overrides(self):
        model = Chain()
        config = autoround(calib(), bits=4, group_size=32, iters=2, bs=4, n_samples=8, amp=False, progress=False,
                           weight_config={"layers.0.up": {"bits": 8, "group_size": -1, "scheme": "sym", "data_type": "int"},
                                          "head": {"bits": 3, "group_size": 32}})
        quantize_(model, config)
        up, down, head = model.layers[0].up.weight, model.layers[0].down.weight, model.head.weight
        self.assertEqual((up.spec.quant_min, up.spec.quant_max, up.spec.block_size), (-127, 127, (1, 64)))
        self.assertEqual((down.spec.quant_max, down.spec.block_size), (15, (1, 32)))
        self.assertEqual((head.spec.quant_max, head.spec.block_size), (7, (1, 32)))  # named, so quantized

    def test_deterministic(self):
        outs = []
        for _ in range(2):
            model = Chain()
            quantize_(model, autoround(calib(), bits=3, group_size=32, iters=5, bs=4, n_samples=8, progress=False))
            outs.append(model(torch.ones(2, 64)))
        self.assertTrue(torch.equal(*outs))


class TestClassAPI(TestCase):
    def test_autoround_and_optimizer_variants_on_tiny_llama(self):
        ids = torch.randint(0, 128, (8, 16))
        for cls in (AutoRound, AutoOPTRound):
            model = tiny_llama()
            with torch.no_grad():
                ref = model(ids).logits
            out_model = cls(model, None, bits=4, group_size=32, dataloader=list(ids), iters=4, bs=4, n_samples=8,
                            seqlen=16, progress=False).quantize()
            self.assertIs(out_model, model)
            self.assertIsInstance(model.model.layers[0].self_attn.q_proj.weight, AffineQuantizedTensor)
            with torch.no_grad():
                out = model(ids).logits
            self.assertGreater((20 * torch.log10(ref.norm() / (ref - out).norm())).item(), 15, msg=cls.__name__)

    def test_bad_inputs_change_nothing(self):
        model = Chain()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with self.assertRaisesRegex(CalibrationError, "the calibration data is empty"):
            quantize_(model, autoround([], iters=1, progress=False))
        with self.assertRaisesRegex(ValueError, r"n_samples \(4\) must be at least bs \(8\)"):
            autoround(calib(), n_samples=4, bs=8)
        with self.assertRaisesRegex(ValueError, "bits must be an integer in 1..8, got 9"):
            autoround(calib(), bits=9)
        with self.assertRaisesRegex(ValueError, r"weight_config names layers that are not quantizable Linear layers: \['layers.7.up'\]"):
            quantize_(model, autoround(calib(), iters=1, weight_config={"layers.7.up": {"bits": 4}}, progress=False))
        with self.assertRaisesRegex(CalibrationError, "no transformer blocks found in Linear"):
            quantize_(nn.Linear(4, 4), autoround([torch.randn(2, 4)], iters=1, bs=1, n_samples=1, progress=False))
        with self.assertRaisesRegex(CalibrationError, "no calibration data: pass dataloader"):
            AutoRound(model, dataset_name="NeelNanda/pile-10k")
        for k, v in model.state_dict().items():
            self.assertTrue(torch.equal(v, before[k]), msg=k)


if __name__ == "__main__":
    unittest.main()
