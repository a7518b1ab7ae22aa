"""choose_qparams_affine / quantize_affine / dequantize_affine against float64 references,
PyTorch's quantized_decomposed ops (bit for bit) and hypothesis properties."""

import unittest

import hypothesis.strategies as st
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed)
from expecttest import TestCase
from hypothesis import given, settings
from torch.testing import assert_close

from torchao.quantization.quant_primitives import (
    MappingType,
    ZeroPointDomain,
    choose_qparams_affine,
    dequantize_affine,
    fake_quantize_affine,
    quantize_affine,
)

qd = torch.ops.quantized_decomposed
F32_EPS = torch.finfo(torch.float32).eps


def reference_quantize_f64(x, block_size, scale, zero_point, qmin, qmax):
    """float64 per-block reference: blocks enumerated with unfold-free index arithmetic."""
    x64 = x.double()
    idx = torch.stack(torch.meshgrid(*[torch.arange(n) for n in x.shape], indexing="ij"), dim=-1)
    block_idx = idx // torch.tensor(block_size)
    nblocks = [n // b for n, b in zip(x.shape, block_size)]
    flat = torch.zeros(x.shape, dtype=torch.long)
    for d, nb in enumerate(nblocks):
        flat = flat * nb + block_idx[..., d]
    s = scale.double().reshape(-1)[flat]
    z = zero_point.double().reshape(-1)[flat]
    return torch.clamp(torch.round(x64 * (1.0 / s)) + z, qmin, qmax)


class TestAgainstQuantizedDecomposed(TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_per_tensor_asymmetric_uint8(self):
        x = torch.randn(7, 33)
        scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, x.shape, torch.uint8, eps=F32_EPS,
                                          scale_dtype=torch.float64, zero_point_dtype=torch.int64)
        scale_ref, zp_ref = qd.choose_qparams.tensor(x, 0, 255, F32_EPS, torch.uint8)
        assert_close(scale.reshape(1), scale_ref, atol=0, rtol=0)
        assert_close(zp.reshape(1), zp_ref, atol=0, rtol=0)
        q = quantize_affine(x, x.shape, scale, zp, torch.uint8)
        q_ref = qd.quantize_per_tensor(x, float(scale_ref), int(zp_ref), 0, 255, torch.uint8)
        self.assertTrue(torch.equal(q, q_ref))
        d = dequantize_affine(q, x.shape, scale.float(), zp, torch.uint8)
        d_ref = qd.dequantize_per_tensor(q_ref, float(scale_ref), int(zp_ref), 0, 255, torch.uint8)
        assert_close(d, d_ref, atol=1e-6, rtol=0)

    def test_per_tensor_symmetric_int8(self):
        x = torch.randn(5, 17) * 3
        scale, zp = choose_qparams_affine(x, MappingType.SYMMETRIC, x.shape, torch.int8, eps=F32_EPS,
                                          scale_dtype=torch.float64, zero_point_dtype=torch.int64)
        scale_ref, zp_ref = qd.choose_qparams_symmetric.tensor(x, -128, 127, F32_EPS, torch.int8)
        assert_close(scale.reshape(1), scale_ref, atol=0, rtol=0)
        assert_close(zp.reshape(1), zp_ref, atol=0, rtol=0)

    def test_per_channel(self):
        x = torch.randn(9, 40)
        scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 40), torch.uint8, eps=F32_EPS,
                                          scale_dtype=torch.float32, zero_point_dtype=torch.int64)
        self.assertEqual(tuple(scale.shape), (9,))
        q = quantize_affine(x, (1, 40), scale, zp, torch.uint8)
        q_ref = qd.quantize_per_channel(x, scale, zp, 0, 0, 255, torch.uint8)
        self.assertTrue(torch.equal(q, q_ref))
        d = dequantize_affine(q, (1, 40), scale, zp, torch.uint8)
        d_ref = qd.dequantize_per_channel(q_ref, scale, zp, 0, 0, 255, torch.uint8)
        self.assertTrue(torch.equal(d, d_ref))

    def test_per_channel_group_4bit(self):
        x = torch.randn(6, 96)
        scale, zp = choose_qparams_affine(x, MappingType.SYMMETRIC, (1, 32), torch.int8, -8, 7,
                                          scale_dtype=torch.float32, zero_point_dtype=torch.int32)
        self.assertEqual(tuple(scale.shape), (6, 3))
        q = quantize_affine(x, (1, 32), scale, zp, torch.int8, -8, 7)
        q_ref = qd.quantize_per_channel_group(x, scale, zp, -8, 7, torch.int8, 32)
        self.assertTrue(torch.equal(q, q_ref))
        d = dequantize_affine(q, (1, 32), scale, zp, torch.int8, -8, 7)
        d_ref = qd.dequantize_per_channel_group(q_ref, scale, zp, -8, 7, torch.int8, 32, torch.float32)
        self.assertTrue(torch.equal(d, d_ref))

    def test_per_token_asymmetric(self):
        x = torch.randn(2, 5, 64)
        scale_ref, zp_ref = qd.choose_qparams_per_token_asymmetric(x, torch.int8)
        scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 1, 64), torch.int8, eps=F32_EPS,
                                          scale_dtype=torch.float64, zero_point_dtype=torch.int64)
        self.assertTrue(torch.equal(scale, scale_ref.squeeze(-1)))
        self.assertTrue(torch.equal(zp, zp_ref.squeeze(-1)))
        q = quantize_affine(x, (1, 1, 64), scale, zp, torch.int8)
        q_ref = qd.quantize_per_token(x, scale_ref, zp_ref, -128, 127, torch.int8)
        self.assertTrue(torch.equal(q, q_ref))
        d = dequantize_affine(q, (1, 1, 64), scale, zp, torch.int8)
        d_ref = qd.dequantize_per_token(q_ref, scale_ref, zp_ref, -128, 127, torch.int8, torch.float32)
        self.assertTrue(torch.equal(d, d_ref))


class TestAgainstFloat64(TestCase):
    def test_quantize_matches_float64_reference(self):
        torch.manual_seed(1)
        for shape, block in [((6, 96), (1, 32)), ((4, 3, 10), (2, 3, 5)), ((7, 9), (7, 9)), ((5,), (1,))]:
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                x = (torch.randn(shape) * 4).to(dtype)
                scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, block, torch.uint8, 0, 15,
                                                  scale_dtype=torch.float32, zero_point_dtype=torch.int32)
                q = quantize_affine(x, block, scale, zp, torch.uint8, 0, 15)
                ref = reference_quantize_f64(x.float(), block, scale, zp, 0, 15)
                self.assertTrue(torch.equal(q.double(), ref), msg=f"{shape} {block} {dtype}")

    def test_scale_and_zero_point_formulas(self):
        x = torch.tensor([[-1.0, 0.5, 2.0, 3.0], [0.25, 0.5, 0.75, 1.0]], dtype=torch.float64)
        scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 4), torch.uint8, 0, 15)
        # row 0: range [-1, 3] -> scale 4/15, zp = 0 - round(-1 / (4/15)) = 4; row 1: min clamps to 0
        assert_close(scale, torch.tensor([4 / 15, 1 / 15], dtype=torch.float64), atol=1e-15, rtol=0)
        assert_close(zp, torch.tensor([4.0, 0.0], dtype=torch.float64), atol=0, rtol=0)
        scale, zp = choose_qparams_affine(x, MappingType.SYMMETRIC, (1, 4), torch.int8, -8, 7)
        assert_close(scale, torch.tensor([3 / 7.5, 1 / 7.5], dtype=torch.float64), atol=1e-15, rtol=0)
        assert_close(zp, torch.zeros(2, dtype=torch.float64), atol=0, rtol=0)
        scale, _ = choose_qparams_affine(x, MappingType.SYMMETRIC_NO_CLIPPING_ERR, (1, 4), torch.int8, -8, 7)
        assert_close(scale, torch.tensor([max(1 / 8, 3 / 7), 1 / 7], dtype=torch.float64), atol=1e-15, rtol=0)

    def test_float_zero_point_domain(self):
        x = torch.randn(4, 64, dtype=torch.float64)
        scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 16), torch.uint4, preserve_zero=False,
                                          zero_point_domain=ZeroPointDomain.FLOAT)
        q = quantize_affine(x, (1, 16), scale, zp, torch.uint4, zero_point_domain=ZeroPointDomain.FLOAT)
        self.assertEqual(q.dtype, torch.uint8)
        self.assertTrue(bool((q >= 0).all() and (q <= 15).all()))
        d = dequantize_affine(q, (1, 16), scale, zp, torch.uint4, zero_point_domain=ZeroPointDomain.FLOAT,
                              output_dtype=torch.float64)
        # x ~ (q - 8) * s + zp; min maps to q = 0 and max to q = 15 exactly
        blocks_min = x.reshape(4, 4, 16).amin(-1)
        assert_close(zp, blocks_min + scale * 8, atol=1e-12, rtol=0)
        err = (d - x).abs().reshape(4, 4, 16).amax(-1)
        self.assertTrue(bool((err <= scale / 2 + 1e-12).all()))

    def test_symmetric_no_zero_point(self):
        x = torch.randn(3, 32)
        scale, zp = choose_qparams_affine(x, MappingType.SYMMETRIC, (1, 32), torch.int8,
                                          zero_point_domain=ZeroPointDomain.NONE)
        self.assertIsNone(zp)
        q = quantize_affine(x, (1, 32), scale, None, torch.int8, zero_point_domain=ZeroPointDomain.NONE)
        d = dequantize_affine(q, (1, 32), scale, None, torch.int8, zero_point_domain=ZeroPointDomain.NONE)
        self.assertTrue(torch.equal(d, q.float() * scale.reshape(3, 1)))


BIT_RANGES = [(bits, signed) for bits in range(1, 9) for signed in (False, True) if not (signed and bits == 1)]


class TestProperties(TestCase):
    @settings(max_examples=60, deadline=None)
    @given(
        st.sampled_from(BIT_RANGES),
        st.sampled_from([MappingType.ASYMMETRIC, MappingType.SYMMETRIC]),
        st.integers(1, 4),
        st.sampled_from([1, 2, 8, 16]),
        st.floats(1e-3, 1e3),
        st.integers(0, 2**31 - 1),
    )
    def test_round_trip_idempotent_zero(self, bits_signed, mapping, rows, group, magnitude, seed):
        bits, signed = bits_signed
        qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if mapping == MappingType.SYMMETRIC and qmax - qmin < 2:
            return
        target = torch.int8 if signed else torch.uint8
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(rows, 4 * group, generator=gen, dtype=torch.float64) * magnitude
        x[0, 0] = 0.0
        block = (1, group)
        scale, zp = choose_qparams_affine(x, mapping, block, target, qmin, qmax)
        q = quantize_affine(x, block, scale, zp, target, qmin, qmax)
        self.assertTrue(bool((q >= qmin).all() and (q <= qmax).all()))
        d = dequantize_affine(q, block, scale, zp, target, qmin, qmax, output_dtype=torch.float64)
        s = scale.reshape(rows, 4, 1).expand(rows, 4, group).reshape(rows, -1)
        z = zp.reshape(rows, 4, 1).expand(rows, 4, group).reshape(rows, -1)
        inside = (x / s + z >= qmin) & (x / s + z <= qmax)
        err = (d - x).abs()
        self.assertTrue(bool((err[inside] <= s[inside] / 2 * (1 + 1e-9)).all()))
        # zero is exactly representable
        self.assertEqual(d[0, 0].item(), 0.0)
        # idempotence: quantizing the dequantized values gives the same integers
        q2 = quantize_affine(d, block, scale, zp, target, qmin, qmax)
        self.assertTrue(torch.equal(q, q2))


class TestSubByteDtypesAndBitWidths(TestCase):
    def test_torch_sub_byte_dtypes(self):
        x = torch.randn(4, 16)
        for bits in range(1, 8):
            for target, lo, hi, storage in [
                (getattr(torch, f"uint{bits}"), 0, 2**bits - 1, torch.uint8),
                (getattr(torch, f"int{bits}"), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, torch.int8),
            ]:
                scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 16), target)
                q = quantize_affine(x, (1, 16), scale, zp, target)
                self.assertEqual(q.dtype, storage)
                self.assertEqual((int(q.min()), int(q.max())), (lo, hi), msg=str(target))


class TestBadInputs(TestCase):
    def test_block_size_rank(self):
        with self.assertRaisesRegex(ValueError, r"block_size \(1,\) has 1 dims but the input has shape \(4, 8\)"):
            choose_qparams_affine(torch.randn(4, 8), MappingType.SYMMETRIC, (1,), torch.int8)

    def test_block_size_divisibility(self):
        with self.assertRaisesRegex(ValueError, "dim 1 has size 10, which is not divisible into blocks of 4"):
            quantize_affine(torch.randn(4, 10), (1, 4), torch.ones(8), torch.zeros(8), torch.int8)

    def test_qparams_count(self):
        with self.assertRaisesRegex(ValueError, "scale has 3 elements"):
            quantize_affine(torch.randn(4, 8), (1, 8), torch.ones(3), torch.zeros(4), torch.int8)

    def test_range_outside_storage(self):
        with self.assertRaisesRegex(ValueError, r"quant range \[-200, 100\] does not fit torch.int8 \(range \[-128, 127\]"):
            choose_qparams_affine(torch.randn(4, 8), MappingType.SYMMETRIC, (1, 8), torch.int8, -200, 100)
        with self.assertRaisesRegex(ValueError, r"does not fit torch.uint4 \(range \[0, 15\], stored as torch.uint8\)"):
            quantize_affine(torch.randn(2, 2), (1, 2), torch.ones(2), torch.zeros(2), torch.uint4, 0, 16)

    def test_unsupported_dtypes(self):
        with self.assertRaisesRegex(ValueError, "unsupported quantized dtype torch.float16"):
            choose_qparams_affine(torch.randn(4, 8), MappingType.SYMMETRIC, (1, 8), torch.float16)
        with self.assertRaisesRegex(TypeError, "expects a floating point input"):
            quantize_affine(torch.ones(4, 8, dtype=torch.int32), (1, 8), torch.ones(4), torch.zeros(4), torch.int8)
        with self.assertRaisesRegex(TypeError, "input has dtype torch.uint8 but input_dtype torch.int8"):
            dequantize_affine(torch.ones(4, 8, dtype=torch.uint8), (1, 8), torch.ones(4), None, torch.int8,
                              zero_point_domain=ZeroPointDomain.NONE)

    def test_inconsistent_mapping_options(self):
        with self.assertRaisesRegex(ValueError, "needs ZeroPointDomain.FLOAT"):
            choose_qparams_affine(torch.randn(4, 8), MappingType.ASYMMETRIC, (1, 8), torch.uint8, preserve_zero=False)
        with self.assertRaisesRegex(ValueError, "ASYMMETRIC mapping needs a zero point"):
            choose_qparams_affine(torch.randn(4, 8), MappingType.ASYMMETRIC, (1, 8), torch.uint8,
                                  zero_point_domain=ZeroPointDomain.NONE)
        with self.assertRaisesRegex(ValueError, "zero_point is required"):
            quantize_affine(torch.randn(4, 8), (1, 8), torch.ones(4), None, torch.int8)


class TestOpsInGraphs(TestCase):
    def test_export_shows_quant_ops_by_name(self):
        class QDQ(torch.nn.Module):
            def forward(self, x):
                scale, zp = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 16), torch.uint8)
                return fake_quantize_affine(x, (1, 16), scale, zp, torch.uint8)

        x = torch.randn(4, 32)
        ep = torch.export.export(QDQ(), (x,))
        targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        self.assertTrue({"quant.choose_qparams_affine.default", "quant.quantize_affine.default",
                         "quant.dequantize_affine.default"} <= targets, targets)
        self.assertTrue(torch.equal(ep.module()(x), QDQ()(x)))

    def test_compile_fullgraph_matches_eager(self):
        def qdq(x):
            scale, zp = choose_qparams_affine(x, MappingType.SYMMETRIC, (1, 8), torch.int8)
            return fake_quantize_affine(x, (1, 8), scale, zp, torch.int8)

        x = torch.randn(8, 32)
        torch._dynamo.reset()
        assert_close(torch.compile(qdq, fullgraph=True)(x), qdq(x), atol=1e-6, rtol=1e-6)


if __name__ == "__main__":
    unittest.main()
