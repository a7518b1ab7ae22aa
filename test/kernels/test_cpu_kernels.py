"""The CPU kernel wrappers against float64 references, every M bucket and activation dtype."""

import unittest

import torch
from expecttest import TestCase

from torchao.kernels import cpu as K

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
ROWS = (1, 3, 17, 70)  # 1; small-M bf16 int8 dynamic (2..7); aten._int_mm; dequantized prefill (>= 64)


def rel_err(out, ref):
    return ((out.double() - ref).norm() / ref.norm()).item()


class TestInt8WeightOnly(TestCase):
    def test_against_float64(self):
        torch.manual_seed(0)
        n, k = 7, 96
        w = torch.randint(-128, 128, (n, k), dtype=torch.int8)
        for dtype in DTYPES:
            scale = (torch.rand(n) / 50).to(dtype)
            for m in ROWS:
                x = torch.randn(m, k).to(dtype)
                ref = x.double() @ (w.double() * scale.double()[:, None]).t()
                out = K.int8_weight_only_mm(x, w, scale)
                self.assertEqual(out.dtype, dtype)
                self.assertEqual(tuple(out.shape), (m, n))
                # bf16 compute (fp32 inputs are rounded to bf16): relative error ~2**-8
                self.assertLess(rel_err(out, ref), 1e-2, msg=f"{dtype} M={m}")

    def test_weights_at_unaligned_addresses(self):
        """A weight viewed at an odd byte offset (safetensors buffers, row slices) must not crash the kernel."""
        buf = torch.randint(-128, 128, (64 * 128 + 1,), dtype=torch.int8)
        w = buf[1:].view(64, 128)
        x = torch.randn(5, 128, dtype=torch.bfloat16)
        out = K.int8_weight_only_mm(x, w, torch.ones(64, dtype=torch.bfloat16))
        self.assertLess(rel_err(out, x.double() @ w.double().t()), 1e-2)

    def test_gradient_with_respect_to_input(self):
        w = torch.randint(-128, 128, (16, 32), dtype=torch.int8)
        scale = torch.rand(16) / 50
        x = torch.randn(3, 32, requires_grad=True)
        K.int8_weight_only_mm(x, w, scale).sum().backward()
        expected = (w.double() * scale.double()[:, None]).sum(0).expand(3, 32)
        self.assertLess(rel_err(x.grad, expected), 1e-6)


class TestInt4WeightOnly(TestCase):
    def test_against_float64(self):
        torch.manual_seed(0)
        n, k = 48, 192
        q = torch.randint(0, 16, (n, k), dtype=torch.int32)
        packed = K.int4_cpu_pack(q)
        self.assertTrue(torch.equal(K.int4_cpu_unpack(packed, n, k), q.to(torch.uint8)))
        for group in (32, 64):
            s = torch.rand(k // group, n) / 10 + 0.01
            z = torch.randn(k // group, n) / 10
            w_ref = (q.double() - 8) * s.double().t().repeat_interleave(group, 1) + z.double().t().repeat_interleave(group, 1)
            for dtype in DTYPES:
                sz = torch.stack([s, z], -1).to(K.weight_only_compute_dtype(dtype))
                for m in ROWS:
                    x = torch.randn(m, k).to(dtype)
                    out = K.int4_weight_only_mm(x, packed, group, sz)
                    self.assertEqual(out.dtype, dtype)
                    self.assertLess(rel_err(out, x.double() @ w_ref.t()), 1.5e-2, msg=f"g{group} {dtype} M={m}")

    def test_unpack_odd_channel_blocks(self):
        for n, k in [(16, 2), (80, 64), (112, 34)]:
            q = torch.randint(0, 16, (n, k), dtype=torch.int32)
            self.assertTrue(torch.equal(K.int4_cpu_unpack(K.int4_cpu_pack(q), n, k), q.to(torch.uint8)))

    def test_kernel_group_sizes(self):
        self.assertEqual([K.int4_cpu_kernel_group_size(g) for g in (32, 96, 512, 4096, 16, 48)],
                         [32, 32, 256, 256, None, None])


class TestInt8Dynamic(TestCase):
    def test_exact_integer_products(self):
        torch.manual_seed(0)
        n, k = 9, 200
        w = torch.randint(-128, 128, (n, k), dtype=torch.int8)
        w_scale = torch.rand(n) / 100
        for dtype in DTYPES:
            for m in ROWS:
                xq = torch.randint(-127, 128, (m, k), dtype=torch.int8)
                x_scale = torch.rand(m, 1) / 100
                ref = (xq.double() @ w.double().t()) * x_scale.double() * w_scale.double()
                out = K.int8_dynamic_mm(xq, x_scale, w, w_scale, dtype)
                self.assertEqual(out.dtype, dtype)
                tol = 1e-6 if dtype == torch.float32 else 8e-3
                self.assertLess(rel_err(out, ref), tol, msg=f"{dtype} M={m}")


if __name__ == "__main__":
    unittest.main()
