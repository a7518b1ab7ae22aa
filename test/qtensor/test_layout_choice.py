"""A layout owns its knowledge: which linear kernels run it, where it is the preferred format, what a
checkpoint stores instead; relayout moves a tensor between layouts exactly."""

import unittest
from dataclasses import replace

import torch
import torch.nn.functional as F
from expecttest import TestCase

from torchao.qtensor import MappingType, QuantSpec, ZeroPointDomain, register_layout, select_linear_kernel, to_aq
from torchao.qtensor.layouts import PlainLayout, best_layout, portable_layout, restored_layout


@register_layout
class RowMajorInt8Layout(PlainLayout):
    """A test layout: plain storage under another name, run by the CPU int8 weight-only kernel."""

    name = "test_row_major_int8"
    linear_kernels = ("cpu_int8_weight_only",)


@register_layout
class OpaqueLayout(PlainLayout):
    """A test layout no kernel declares: F.linear falls back to dequantize."""

    name = "test_opaque"
    linear_kernels = ()


def int4_spec(n=32, k=64, group=32):
    return QuantSpec.of((n, k), torch.bfloat16, (1, group), torch.uint4, 0, 15, ZeroPointDomain.FLOAT, "int4_packed")


class TestLayoutChoice(TestCase):
    def test_best_portable_and_restored_layouts(self):
        cpu, cuda = torch.device("cpu"), torch.device("cuda")
        spec = int4_spec()
        self.assertEqual(best_layout(spec, cpu, "int4_packed"), "int4_cpu")
        self.assertEqual(best_layout(spec, cuda, "plain"), "int4_packed")
        self.assertEqual(best_layout(int4_spec(n=24), cpu, "int4_packed"), "int4_packed")  # N % 16: not int4_cpu
        self.assertEqual(portable_layout(replace(spec, layout="int4_cpu"), cpu), "int4_packed")
        self.assertEqual(portable_layout(spec, cpu), "int4_packed")
        self.assertEqual(restored_layout(spec, cpu), "int4_cpu")
        self.assertEqual(restored_layout(spec, cuda), "int4_packed")

    def test_a_new_layout_declares_its_kernels(self):
        torch.manual_seed(0)
        w = torch.randn(32, 64)
        x = torch.randn(3, 64)
        for layout, kernel in (("test_row_major_int8", "cpu_int8_weight_only"), ("test_opaque", None)):
            q = to_aq(w, MappingType.SYMMETRIC, (1, 64), torch.int8, eps=1e-6, zero_point_domain=ZeroPointDomain.NONE,
                      layout=layout)
            chosen = select_linear_kernel(x, q)
            self.assertEqual(None if chosen is None else chosen.name, kernel)
            ref = F.linear(x.double(), q.dequantize(torch.float64))
            # the CPU int8 kernel computes float32 activations in bfloat16: 1% of the output scale
            self.assertLess((F.linear(x, q).double() - ref).abs().max().item(), 0.01 * ref.abs().max().item())

    def test_relayout_is_exact_and_keeps_transposes(self):
        torch.manual_seed(0)
        w = torch.randn(32, 64, dtype=torch.bfloat16)
        q = to_aq(w, MappingType.ASYMMETRIC, (1, 32), torch.uint4, 0, 15, eps=1e-6, preserve_zero=False,
                  zero_point_domain=ZeroPointDomain.FLOAT, layout="int4_cpu")
        for layout in ("int4_packed", "plain", "int4_cpu"):
            moved = q.relayout(layout)
            self.assertEqual(moved.spec.layout, layout)
            self.assertTrue(torch.equal(moved.dequantize(), q.dequantize()), msg=layout)
        t = q.t().relayout("int4_packed")
        self.assertTrue(t.spec.transposed)
        self.assertTrue(torch.equal(t.dequantize(), q.dequantize().t()))


if __name__ == "__main__":
    unittest.main()
