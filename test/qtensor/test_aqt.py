"""AffineQuantizedTensor: layouts round-trip exactly, flatten/unflatten, ops, reprs and errors."""

import copy
import io
import unittest

import torch
from expecttest import TestCase
from torch.testing import assert_close

import torchao  # noqa: F401
from torchao.dtypes import AffineQuantizedTensor, to_aq
from torchao.qtensor import LAYOUTS, MappingType, ZeroPointDomain
from torchao.qtensor.layouts.nibbles import pack_nibbles, unpack_nibbles

INT4_CASES = [  # (target, qmin, qmax, mapping, domain, preserve_zero)
    (torch.uint4, 0, 15, MappingType.ASYMMETRIC, ZeroPointDomain.INT, True),
    (torch.uint4, 0, 15, MappingType.ASYMMETRIC, ZeroPointDomain.FLOAT, False),
    (torch.int4, -8, 7, MappingType.SYMMETRIC, ZeroPointDomain.NONE, True),
    (torch.int4, -8, 7, MappingType.SYMMETRIC, ZeroPointDomain.INT, True),
    (torch.uint3, 0, 7, MappingType.ASYMMETRIC, ZeroPointDomain.INT, True),
]


def quantize_int4(w, layout, case, group=32):
    target, qmin, qmax, mapping, domain, preserve_zero = case
    return to_aq(w, mapping, (1, group), target, qmin, qmax, eps=1e-6, scale_dtype=torch.float32,
                 zero_point_dtype=torch.float32 if domain == ZeroPointDomain.FLOAT else torch.int32,
                 preserve_zero=preserve_zero, zero_point_domain=domain, layout=layout)


class TestLayoutsExact(TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_nibble_pack_round_trip(self):
        values = torch.randint(0, 16, (5, 14), dtype=torch.uint8)
        packed = pack_nibbles(values)
        self.assertEqual(tuple(packed.shape), (5, 7))
        self.assertEqual(int(packed[0, 0]), int(values[0, 0]) | (int(values[0, 1]) << 4))
        self.assertTrue(torch.equal(unpack_nibbles(packed), values))

    def test_every_layout_holds_the_plain_integers_exactly(self):
        for n, k in [(16, 64), (48, 96), (64, 256)]:
            w = torch.randn(n, k)
            for case in INT4_CASES:
                plain = quantize_int4(w, "plain", case)
                for layout in ("int4_packed", "int4_cpu"):
                    packed = quantize_int4(w, layout, case)
                    int_data, scale, zero_point = packed.get_plain()
                    self.assertTrue(torch.equal(int_data, plain.int_data), msg=f"{layout} {case} {n}x{k}")
                    self.assertTrue(torch.equal(scale, plain.scale))
                    self.assertTrue(torch.equal(packed.dequantize(), plain.dequantize()))

    def test_int4_cpu_kernel_dequantization_matches(self):
        from torchao.kernels.cpu import int4_cpu_dequantize

        w = torch.randn(32, 128)
        for case in INT4_CASES:
            q = quantize_int4(w, "int4_cpu", case, group=64)
            kernel_w = int4_cpu_dequantize(q.packed, q.spec.extra("kernel_group_size"), q.scales_and_zeros, 128)
            # fp32 weights run the kernel with bf16 scales and zeros: ~2**-8 relative rounding
            self.assertEqual(kernel_w.dtype, torch.bfloat16)
            assert_close(kernel_w.float(), q.dequantize(), atol=2e-2, rtol=1e-2)

    def test_int4_cpu_per_channel_runs_as_groups(self):
        w = torch.randn(16, 512)
        q = quantize_int4(w, "int4_cpu", INT4_CASES[0], group=512)
        self.assertEqual(q.spec.extra("kernel_group_size"), 256)
        self.assertTrue(torch.equal(q.get_plain()[0], quantize_int4(w, "plain", INT4_CASES[0], 512).int_data))

    def test_layout_refuses_what_it_cannot_hold(self):
        with self.assertRaisesRegex(ValueError, "needs out_features divisible by 16, got N=7"):
            quantize_int4(torch.randn(7, 64), "int4_cpu", INT4_CASES[0])
        with self.assertRaisesRegex(ValueError, r"holds at most 16 levels, got range \[-128, 127\]"):
            to_aq(torch.randn(16, 64), MappingType.SYMMETRIC, (1, 32), torch.int8, layout="int4_packed")
        with self.assertRaisesRegex(ValueError, r"unknown layout 'nope'; registered layouts: \[.*'int4_cpu'"):
            to_aq(torch.randn(16, 64), MappingType.SYMMETRIC, (1, 32), torch.int8, layout="nope")

    def test_registry_has_the_layouts(self):
        self.assertTrue({"plain", "int4_packed", "int4_cpu"} <= set(LAYOUTS))

    def test_layout_tensor_names_must_not_shadow_tensor_attributes(self):
        from torchao.qtensor import Layout, register_layout

        class Shadowing(Layout):
            name = "shadowing"
            tensor_names = ("data", "scale")

        with self.assertRaisesRegex(ValueError, r"layout 'shadowing': tensor_names \['data'\] shadow torch.Tensor"):
            register_layout(Shadowing)
        self.assertNotIn("shadowing", LAYOUTS)


class TestTensorProtocol(TestCase):
    def test_flatten_unflatten_inverse(self):
        for layout, case in [("plain", INT4_CASES[0]), ("int4_packed", INT4_CASES[1]), ("int4_cpu", INT4_CASES[2])]:
            q = quantize_int4(torch.randn(32, 64, dtype=torch.bfloat16), layout, case)
            names, ctx = q.__tensor_flatten__()
            rebuilt = AffineQuantizedTensor.__tensor_unflatten__({n: getattr(q, n) for n in names}, ctx, q.shape, q.stride())
            self.assertEqual(rebuilt.spec, q.spec)
            self.assertEqual(rebuilt.__tensor_flatten__()[0], names)
            for n in names:
                self.assertIs(getattr(rebuilt, n), getattr(q, n))
            self.assertEqual(rebuilt.shape, q.shape)
            self.assertEqual(rebuilt.dtype, torch.bfloat16)

    def test_repr(self):
        q = to_aq(torch.randn(8, 64), MappingType.ASYMMETRIC, (1, 32), torch.uint4, layout="int4_packed")
        self.assertExpectedInline(repr(q), """AffineQuantizedTensor(shape=(8, 64), dtype=torch.float32, layout=int4_packed, block_size=(1, 32), target_dtype=torch.uint4, quant_range=[0, 15], zero_point_domain=INT, device=cpu)""")

    def test_save_load_weights_only(self):
        q = quantize_int4(torch.randn(16, 64), "int4_cpu", INT4_CASES[1])
        buf = io.BytesIO()
        torch.save({"w": q}, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=True)["w"]
        self.assertIsInstance(loaded, AffineQuantizedTensor)
        self.assertEqual(loaded.spec, q.spec)
        self.assertTrue(torch.equal(loaded.dequantize(), q.dequantize()))

    def test_deepcopy(self):
        q = to_aq(torch.randn(8, 64), MappingType.SYMMETRIC, (1, 64), torch.int8)
        c = copy.deepcopy(q)
        self.assertIsNot(c.int_data, q.int_data)
        self.assertTrue(torch.equal(c.dequantize(), q.dequantize()))


class TestOps(TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.w = torch.randn(32, 64)
        self.q = to_aq(self.w, MappingType.ASYMMETRIC, (1, 16), torch.uint8, zero_point_dtype=torch.int32)

    def test_detach_clone(self):
        for t in (self.q.detach(), self.q.clone()):
            self.assertIsInstance(t, AffineQuantizedTensor)
            self.assertTrue(torch.equal(t.dequantize(), self.q.dequantize()))
        self.assertIsNot(self.q.clone().int_data, self.q.int_data)

    def test_to_dtype(self):
        b = self.q.to(torch.bfloat16)
        self.assertEqual(b.dtype, torch.bfloat16)
        self.assertEqual(b.scale.dtype, torch.bfloat16)  # float qparams follow the tensor's dtype
        self.assertTrue(torch.equal(b.int_data, self.q.int_data))
        with self.assertRaisesRegex(NotImplementedError, "cannot convert an AffineQuantizedTensor to torch.int32"):
            self.q.to(torch.int32)

    def test_transpose_and_mm(self):
        t = self.q.t()
        self.assertEqual(tuple(t.shape), (64, 32))
        assert_close(t.dequantize(), self.q.dequantize().t())
        x = torch.randn(3, 64)
        assert_close(torch.mm(x, t), x @ self.q.dequantize().t(), atol=1e-4, rtol=1e-4)
        bias = torch.randn(32)
        assert_close(torch.addmm(bias, x, t), torch.addmm(bias, x, self.q.dequantize().t()), atol=1e-4, rtol=1e-4)
        self.assertEqual(tuple(t.t().shape), (32, 64))

    def test_slice(self):
        rows = self.q[8:24]
        self.assertEqual(tuple(rows.shape), (16, 64))
        self.assertTrue(torch.equal(rows.dequantize(), self.q.dequantize()[8:24]))
        cols = self.q[:, 16:48]
        self.assertTrue(torch.equal(cols.dequantize(), self.q.dequantize()[:, 16:48]))
        with self.assertRaisesRegex(NotImplementedError, r"slice of dim 1 \[8:48:1\] does not align with block_size \(1, 16\)"):
            self.q[:, 8:48]

    def test_slice_packed_layouts(self):
        q = quantize_int4(torch.randn(64, 64), "int4_cpu", INT4_CASES[0])
        rows = q[16:48]
        self.assertEqual(rows.spec.layout, "int4_cpu")
        self.assertTrue(torch.equal(rows.dequantize(), q.dequantize()[16:48]))

    def test_view(self):
        v = self.q.view(2, 16, 64)
        self.assertTrue(torch.equal(v.dequantize(), self.q.dequantize().view(2, 16, 64)))
        self.assertTrue(torch.equal(self.q.reshape(32, 64).dequantize(), self.q.dequantize()))
        with self.assertRaisesRegex(NotImplementedError, "can only be reshaped in its leading dims"):
            self.q.view(64, 32)

    def test_copy_(self):
        other = to_aq(torch.randn(32, 64), MappingType.ASYMMETRIC, (1, 16), torch.uint8, zero_point_dtype=torch.int32)
        other.copy_(self.q)
        self.assertTrue(torch.equal(other.dequantize(), self.q.dequantize()))
        with self.assertRaisesRegex(NotImplementedError, "copy_ between a quantized and a float tensor"):
            other.copy_(torch.randn(32, 64))
        mismatched = to_aq(torch.randn(32, 64), MappingType.ASYMMETRIC, (1, 32), torch.uint8, zero_point_dtype=torch.int32)
        with self.assertRaisesRegex(ValueError, "does not match destination"):
            other.copy_(mismatched)

    def test_copy_across_layouts(self):
        w = torch.randn(32, 64)
        dst = quantize_int4(torch.randn(32, 64), "int4_cpu", INT4_CASES[0])
        dst.copy_(quantize_int4(w, "int4_packed", INT4_CASES[0]))
        self.assertTrue(torch.equal(dst.dequantize(), quantize_int4(w, "plain", INT4_CASES[0]).dequantize()))

    def test_unsupported_op_names_itself(self):
        with self.assertRaisesRegex(NotImplementedError, "AffineQuantizedTensor does not implement aten.add.Tensor"):
            self.q + 1
        with self.assertRaisesRegex(NotImplementedError, "aten.sum"):
            self.q.sum()


if __name__ == "__main__":
    unittest.main()
