"""Quantized models under torch.compile(fullgraph=True), torch.save/load(weights_only=True),
torch.export (native and unwrap_tensor_subclass) and AOTInductor."""

import io
import os
import tempfile
import unittest
import warnings

import torch
import torch.nn as nn
from expecttest import TestCase

import torchao  # noqa: F401
from torchao.quantization import (
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
    quantize_,
    unwrap_tensor_subclass,
)

CONFIGS = {
    "int8wo": int8_weight_only,
    "int4wo": lambda: int4_weight_only(group_size=32),
    "int8dq": int8_dynamic_activation_int8_weight,
    "8da4w": lambda: int8_dynamic_activation_int4_weight(32),
}


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(128, 64)
        self.l2 = nn.Linear(64, 32, bias=False)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


def quantized_model(config_name, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    model = TwoLayers().to(dtype).eval()
    quantize_(model, CONFIGS[config_name]())
    return model


def sqnr(ref, out):
    ref, out = ref.double(), out.double()
    return (20 * torch.log10(ref.norm() / (ref - out).norm())).item()


class TestCompile(TestCase):
    def test_fullgraph_every_config_and_dtype(self):
        for name in CONFIGS:
            for dtype in (torch.float32, torch.bfloat16):
                model = quantized_model(name, dtype)
                torch._dynamo.reset()
                compiled = torch.compile(model, fullgraph=True)  # raises on any graph break
                # every CPU path: M = 1, small M, larger M (the last ones recompile with a dynamic batch)
                for batch in (1, 5, 9, 70, 1):
                    x = torch.randn(batch, 128).to(dtype)
                    out = compiled(x)
                    self.assertEqual(tuple(out.shape), (batch, 32))
                    self.assertGreater(sqnr(model(x), out), 40, msg=f"{name} {dtype} M={batch}")

    def test_compile_with_grad_enabled_parameters(self):
        """Biases that require grad make the compiled graph differentiable in x; that must still compile."""
        model = quantized_model("int4wo")
        x = torch.randn(3, 128, requires_grad=True)
        torch._dynamo.reset()
        out = torch.compile(model, fullgraph=True)(x)
        out.sum().backward()
        self.assertEqual(tuple(x.grad.shape), (3, 128))


class TestSaveLoad(TestCase):
    def test_state_dict_round_trip_weights_only(self):
        for name in CONFIGS:
            model = quantized_model(name)
            x = torch.randn(4, 128)
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            buf.seek(0)
            state = torch.load(buf, weights_only=True)
            fresh = quantized_model(name, seed=1)
            fresh.load_state_dict(state)
            self.assertTrue(torch.equal(fresh(x), model(x)), msg=name)


def export_model(model, x, dynamic=True):
    shapes = ({0: torch.export.Dim("batch", min=1, max=256)},) if dynamic else None
    with torch.no_grad():
        return torch.export.export(model, (x,), dynamic_shapes=shapes)


def graph_ops(ep):
    return sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"})


class TestExport(TestCase):
    def test_export_native_and_unwrapped(self):
        expected_ops = {
            "int8wo": {"torchao.int8_weight_only_mm_cpu.default"},
            "int4wo": {"torchao.int4_weight_only_mm_cpu.default"},
            "int8dq": {"quant.choose_qparams_affine.default", "quant.quantize_affine.default",
                       "torchao.int8_dynamic_mm_cpu.default"},
            "8da4w": {"quant.choose_qparams_affine.default", "quant.quantize_affine.default",
                      "quant.dequantize_affine.default", "torchao.int4_weight_only_mm_cpu.default"},
        }
        for name in CONFIGS:
            for unwrap in (False, True):
                model = quantized_model(name)
                x = torch.randn(4, 128)
                ref = model(x)
                if unwrap:
                    unwrap_tensor_subclass(model)
                ep = export_model(model, x)
                self.assertTrue(expected_ops[name] <= set(graph_ops(ep)), msg=f"{name}: {graph_ops(ep)}")
                self.assertTrue(torch.equal(ep.module()(x), ref), msg=name)
                x7 = torch.randn(7, 128)
                self.assertTrue(torch.equal(ep.module()(x7), model(x7)))

    def _aoti_round_trip(self, name):
        model = quantized_model(name)
        ep = export_model(model, torch.randn(4, 128))
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = torch._inductor.aoti_compile_and_package(ep, package_path=os.path.join(tmp, f"{name}.pt2"))
            runner = torch._inductor.aoti_load_package(path)
            for batch in (1, 13):
                x = torch.randn(batch, 128)
                self.assertGreater(sqnr(model(x), runner(x)), 50, msg=f"{name} batch {batch}")

    def test_aoti_dynamic_batch_every_config(self):
        for name in CONFIGS:
            self._aoti_round_trip(name)


if __name__ == "__main__":
    unittest.main()
