"""Seed 004: bit-packing compressors, GGUF Q4_0 bytes, embeddings and convolutions, tied weights, the
compression registry, HQQ, and SmoothQuant."""

import copy
import struct
import unittest
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from expecttest import TestCase
from hypothesis import given, settings
from hypothesis import strategies as st

import torchao
from torchao.dtypes import AffineQuantizedTensor
from torchao.qtensor.compressors import BitPack, Chain, packed_length
from torchao.qtensor.layouts.q4_0 import choose_q4_0_scale, quantize_q4_0
from torchao.quant_api.hqq import hqq_quantize
from torchao.quant_api.registry import COMPRESSION_REGISTRY, Q4_0Config, compress, register_compression
from torchao.quant_api.weight_format import IntFormat
from torchao.quantization import ZeroPointDomain, int8_dynamic_activation_int8_weight, intx_weight_only, quantize_
from torchao.quantization.smoothquant import smooth_fq_linear_to_inference, swap_linear_with_smooth_fq_linear


def sqnr(ref, out):
    ref, out = ref.double(), out.double()
    return (20 * torch.log10(ref.norm() / (ref - out).norm())).item()


class TestBitPacking(TestCase):
    @settings(max_examples=80, deadline=None)
    @given(st.integers(1, 8), st.integers(1, 3), st.integers(1, 67), st.integers(0, 2**31 - 1))
    def test_exact_round_trip_any_length(self, bits, rows, length, seed):
        gen = torch.Generator().manual_seed(seed)
        values = torch.randint(0, 2**bits, (rows, length), generator=gen, dtype=torch.uint8)
        packed = BitPack(bits).compress(values)
        self.assertEqual(tuple(packed.shape), (rows, packed_length(length, bits)))
        self.assertTrue(torch.equal(BitPack(bits).decompress(packed, length), values))

    def test_bit_order(self):
        packed = BitPack(3).compress(torch.tensor([[1, 2, 7]], dtype=torch.uint8))
        # bits LSB first: 1 -> 100, 2 -> 010, 7 -> 111 => 100010111 => byte0 = 0b11010001, byte1 = 0b1
        self.assertEqual(packed.tolist(), [[0b11010001, 0b1]])

    def test_chain_and_errors(self):
        values = torch.randint(0, 4, (2, 10), dtype=torch.uint8)
        chain = Chain((BitPack(2), BitPack(8)))
        self.assertTrue(torch.equal(chain.decompress(chain.compress(values), 10), values))
        with self.assertRaisesRegex(ValueError, "value 4 does not fit in 2 bits"):
            BitPack(2).compress(torch.tensor([4], dtype=torch.uint8))

    def test_bitpacked_layout_memory_matches_bit_width(self):
        w = torch.randn(64, 96)
        for bits in (1, 2, 3, 5, 7):
            q = torchao.qtensor.to_aq(w, torchao.qtensor.MappingType.ASYMMETRIC, (1, 32), torch.uint8, 0, 2**bits - 1,
                                      layout="bitpacked")
            self.assertEqual(q.packed.numel(), 64 * 96 * bits // 8)
            plain = torchao.qtensor.to_aq(w, torchao.qtensor.MappingType.ASYMMETRIC, (1, 32), torch.uint8, 0, 2**bits - 1)
            self.assertTrue(torch.equal(q.dequantize(), plain.dequantize()))


class TestQ4_0(TestCase):
    def test_hand_computed_block(self):
        x = torch.tensor([[float(v) for v in range(-16, 16)]]) / 4  # -4.0 .. 3.75, largest magnitude -4.0
        q = Q4_0Config()(x)
        block = q.blocks.reshape(-1).tolist()
        self.assertEqual(len(block), 18)
        d = struct.unpack("<e", bytes(block[:2]))[0]
        self.assertEqual(d, 0.5)  # -4 / -8
        # u = min(15, trunc(x / 0.5 + 8.5)): x=-4 -> 0, x=-3.75 -> 1 (trunc(1.0)), ..., x=3.75 -> 15 (clamped)
        u = [min(15, int(v / 4 / 0.5 + 8.5)) for v in range(-16, 16)]
        self.assertEqual(block[2:], [u[j] | (u[j + 16] << 4) for j in range(16)])
        self.assertEqual(q.dequantize().reshape(-1).tolist(), [(v - 8) * 0.5 for v in u])

    def test_matches_reference_rounding_and_linear(self):
        torch.manual_seed(0)
        w = torch.randn(48, 128)
        d = choose_q4_0_scale(w)
        q = quantize_q4_0(w, d)
        ref = torch.clamp(torch.trunc(w.reshape(48, 4, 32) / d.unsqueeze(-1) + 8.5), max=15) - 8
        self.assertTrue(torch.equal(q.reshape(48, 4, 32).float(), ref))
        layer = nn.Linear(128, 48)
        x = torch.randn(3, 128)
        out_ref = layer(x)
        quantize_(layer, Q4_0Config())
        self.assertEqual(layer.weight.blocks.numel(), 48 * 4 * 18)  # 4.5 bits per weight
        self.assertGreater(sqnr(out_ref, layer(x)), 15)

    def test_grid_mse_is_no_worse_than_min_max(self):
        torch.manual_seed(0)
        w = torch.randn(32, 256) * torch.rand(32, 1)
        err = lambda q: ((q.dequantize() - w) ** 2).sum().item()  # noqa: E731
        self.assertLessEqual(err(Q4_0Config(grid_size=50)(w)), err(Q4_0Config()(w)))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(100, 64)
        self.conv1 = nn.Conv1d(64, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 16, 3, padding=1)
        self.head = nn.Linear(64, 100, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, ids):
        h = self.emb(ids)                                   # (B, S, 64)
        c = self.conv1(h.transpose(1, 2))                   # (B, 32, S)
        c2 = self.conv2(c.unsqueeze(-1).expand(-1, -1, -1, 4))
        return self.head(h) + c2.mean((1, 3)).unsqueeze(-1)


class TestModulesAndRegistry(TestCase):
    def test_min_max_q4_0_all_embedding_conv_and_tied(self):
        model = Tiny()
        ids = torch.randint(0, 100, (2, 12))
        ref = model(ids)
        compress(model, "min_max_q4_0_all")
        self.assertIs(model.emb.weight, model.head.weight)  # still tied, quantized once
        self.assertEqual(model.emb.weight.spec.layout, "q4_0")
        self.assertEqual(model.conv1.weight.spec.layout, "bitpacked")
        self.assertEqual(model.conv2.weight.spec.block_size, (1, 32, 3, 3))
        self.assertGreater(sqnr(ref, model(ids)), 12)
        self.assertGreater(sqnr(Tiny().emb(ids), model.emb(ids)), 18)

    def test_tied_weight_with_an_unselected_user_stays_float(self):
        model = Tiny()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compress(model, "min_max_q4_0_linear")
        self.assertNotIsInstance(model.head.weight, AffineQuantizedTensor)
        self.assertIs(model.emb.weight, model.head.weight)
        self.assertIn("head: weight shared with emb.weight, which is not being quantized", str(caught[0].message))

    def test_registry(self):
        for name in ("min_max_q4_0_all", "grid_mse_q4_0_all", "int8wo", "int4wo_128", "int8dq", "8da4w_32", "hqq_int4_64"):
            self.assertIn(name, COMPRESSION_REGISTRY)
        calls = []

        @register_compression("count_linears")
        def count(model, tokenizer=None, export_dirpath=None, local_dir=None, **kwargs):
            calls.append(sum(isinstance(m, nn.Linear) for m in model.modules()))
            return model

        try:
            compress(Tiny(), "count_linears")
            self.assertEqual(calls, [1])
        finally:
            del COMPRESSION_REGISTRY["count_linears"]
        with self.assertRaisesRegex(KeyError, r"unknown compression 'q5_k'; registered: \['8da4w_32', "):
            compress(Tiny(), "q5_k")


class TestHQQ(TestCase):
    def test_error_no_worse_than_rtn_per_group(self):
        torch.manual_seed(0)
        w = torch.randn(64, 256) + torch.randn(64, 256).pow(3) * 0.1  # heavy tails
        rep = lambda t: t.repeat_interleave(64, 1)  # noqa: E731
        group_error = lambda r: (w - r).pow(2).reshape(64, 4, 64).sum(-1)  # noqa: E731
        for bits in (2, 3, 4, 8):
            fmt = IntFormat.for_bits(bits)
            rtn_err = {domain: group_error(intx_weight_only(bits, 64, zero_point_domain=domain)(w).dequantize())
                       for domain in (ZeroPointDomain.INT, ZeroPointDomain.FLOAT)}
            for integer_zero in (True, False):
                q, s, z = hqq_quantize(w, fmt, 64, integer_zero=integer_zero)
                self.assertTrue(fmt.quant_min <= int(q.min()) and int(q.max()) <= fmt.quant_max)
                self.assertTrue(bool((s > 0).all()))
                if integer_zero:
                    self.assertTrue(torch.equal(z, z.round()), msg="integer zero points")
                hqq_err = group_error((q - rep(z)) * rep(s))
                bounds = [rtn_err[ZeroPointDomain.INT]] if integer_zero else list(rtn_err.values())
                for rtn in bounds:
                    self.assertTrue(bool((hqq_err <= rtn * (1 + 1e-6)).all()), msg=(bits, integer_zero))
                    self.assertLess(hqq_err.sum().item(), 0.97 * rtn.sum().item(), msg=(bits, integer_zero))

    def test_constant_and_zero_groups_are_exact(self):
        w = torch.zeros(4, 128)
        w[1] = 0.5
        w[2, :64] = -3.0
        for integer_zero in (True, False):
            q, s, z = hqq_quantize(w, IntFormat.for_bits(3), 64, integer_zero=integer_zero)
            self.assertTrue(bool(torch.isfinite(s).all() and torch.isfinite(z).all()))
            torch.testing.assert_close((q - z.repeat_interleave(64, 1)) * s.repeat_interleave(64, 1), w,
                                       rtol=0, atol=1e-6)

    def test_config_zero_point_kinds_and_kernel_layout(self):
        layer = nn.Linear(128, 32)
        x = torch.randn(4, 128)
        ref = layer(x)
        for config, domain in ((intx_weight_only(4, 64, use_hqq=True), "FLOAT"),
                               (intx_weight_only(4, 64, use_hqq=True, zero_point_domain=ZeroPointDomain.INT), "INT"),
                               (intx_weight_only(3, 64, zero_point_domain=ZeroPointDomain.FLOAT), "FLOAT")):
            quantized = copy.deepcopy(layer)
            quantize_(quantized, config)
            self.assertEqual((quantized.weight.spec.layout, quantized.weight.spec.zero_point_domain.name),
                             ("int4_cpu", domain))
            self.assertGreater(sqnr(ref, quantized(x)), 12 if config.bits == 3 else 18)
            # the CPU int4 kernel holds scales and float zero points in bfloat16
            self.assertGreater(sqnr(F.linear(x, quantized.weight.dequantize(), layer.bias), quantized(x)), 40)

    def test_float_zero_point_is_refused_where_it_cannot_apply(self):
        with self.assertRaisesRegex(ValueError, r"zero_point_domain must be one of .*sym=True"):
            intx_weight_only(4, 64, sym=True, zero_point_domain=ZeroPointDomain.FLOAT)
        conv = nn.Conv2d(8, 4, 3)
        self.assertIn("2-D", intx_weight_only(4, None, zero_point_domain=ZeroPointDomain.FLOAT).unsupported_reason(conv.weight))


class TestSmoothQuant(TestCase):
    def test_seed_flow_beats_plain_int8_dynamic_on_outlier_channels(self):
        torch.manual_seed(0)

        def data(n):
            x = torch.randn(n, 256)
            x[:, :4] *= 50  # outlier channels
            return x

        base = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64))
        model, plain = copy.deepcopy(base), copy.deepcopy(base)
        swap_linear_with_smooth_fq_linear(model)
        model.train()
        for _ in range(8):
            model(data(32))
        smooth_fq_linear_to_inference(model)
        quantize_(plain, int8_dynamic_activation_int8_weight())
        x = data(64)
        ref = base(x)
        self.assertIsInstance(model[0].weight, AffineQuantizedTensor)
        self.assertEqual(model[0].weight.spec.act_quant, "int8_per_token_sym")
        self.assertGreater(sqnr(ref, model(x)), sqnr(ref, plain(x)) + 5)
        torch._dynamo.reset()
        self.assertGreater(sqnr(model(x), torch.compile(model, fullgraph=True)(x)), 40)

    def test_uncalibrated_raises(self):
        model = swap_linear_with_smooth_fq_linear(nn.Sequential(nn.Linear(8, 8)))
        with self.assertRaisesRegex(RuntimeError, "saw no calibration data"):
            smooth_fq_linear_to_inference(model)


if __name__ == "__main__":
    unittest.main()
