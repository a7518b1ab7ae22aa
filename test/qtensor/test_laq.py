"""to_laq / LinearActivationQuantizedTensor: seed 002's flow (quantize the weight, then wrap it with a
function that quantizes the input of every F.linear), against float64 references; the named per-token
quantizers reach the integer kernels; compile and export."""

import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F
from expecttest import TestCase

from torchao.dtypes import LinearActivationQuantizedTensor, to_aq, to_laq
from torchao.quantization import ACTIVATION_QUANTIZER_FUNCS, int8_dynamic_activation_int8_weight, quantize_
from torchao.quantization.quant_primitives import MappingType


def apply_int8wo_quant(t):
    """The seed's apply function, per row of a weight or per token of an activation."""
    block_size = (1,) * (t.dim() - 1) + (t.shape[-1],)
    return to_aq(t, MappingType.SYMMETRIC, block_size, torch.int8, eps=torch.finfo(torch.float32).eps,
                 zero_point_dtype=torch.int64)


class TestLinearActivationQuantized(TestCase):
    def test_seed_flow_matches_the_float64_reference(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))
        x = torch.randn(5, 64)
        for m in (model[0], model[2]):
            m.weight = nn.Parameter(apply_int8wo_quant(m.weight))
            m.weight = nn.Parameter(to_laq(m.weight, apply_int8wo_quant))
        self.assertIsInstance(model[0].weight, LinearActivationQuantizedTensor)

        def reference(layer, h):
            w = layer.weight.original_weight_tensor.dequantize(torch.float64)
            return F.linear(apply_int8wo_quant(h).dequantize(torch.float64), w, layer.bias.double())

        h = reference(model[0], x).relu().float()
        expected = reference(model[2], h)
        # the CPU int8 weight-only kernel computes float32 activations in bfloat16: 1% of the output scale
        bound = 0.01 * expected.abs().max().item()
        self.assertLess((model(x).double() - expected).abs().max().item(), bound)

    def test_named_quantizers_use_the_integer_kernels(self):
        torch.manual_seed(0)
        a, b = nn.Linear(64, 32), nn.Linear(64, 32)
        b.load_state_dict(a.state_dict())
        quantize_(a, int8_dynamic_activation_int8_weight())
        weight = a.weight.with_tensors(lambda t: t, act_quant=None)  # the same int8 weight, weight-only
        b.weight = nn.Parameter(to_laq(weight, ACTIVATION_QUANTIZER_FUNCS["int8_per_token_sym"]))
        for rows in (1, 3, 16):
            x = torch.randn(rows, 64)
            self.assertTrue(torch.equal(a(x), b(x)), msg=rows)

    def test_compile_and_export(self):
        torch.manual_seed(0)
        layer = nn.Linear(64, 32)
        layer.weight = nn.Parameter(to_laq(apply_int8wo_quant(layer.weight), ACTIVATION_QUANTIZER_FUNCS["int8_per_token_sym"]))
        x = torch.randn(4, 64)
        eager = layer(x)
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), eager, atol=1e-5, rtol=1e-5)
        exported = torch.export.export(layer, (x,))
        torch.testing.assert_close(exported.module()(x), eager, atol=1e-5, rtol=1e-5)

    def test_other_ops_and_errors(self):
        w = apply_int8wo_quant(torch.randn(8, 16))
        laq = to_laq(w, apply_int8wo_quant)
        self.assertIsInstance(laq.detach(), LinearActivationQuantizedTensor)
        self.assertEqual(tuple(laq.t().shape), (16, 8))
        torch.testing.assert_close(laq.dequantize(), w.dequantize())
        with self.assertRaisesRegex(TypeError, "input_quant_func must be callable"):
            to_laq(w, "int8")
        with self.assertRaisesRegex(NotImplementedError, "does not implement aten.mul"):
            laq * 2


if __name__ == "__main__":
    unittest.main()
