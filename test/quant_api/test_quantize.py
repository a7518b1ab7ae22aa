"""quantize_ / quantize with every config: output quality, kernel choice, skips, strictness, tied
weights, the seed's legacy entry points."""

import copy
import unittest
import warnings

import torch
import torch.nn as nn
from expecttest import TestCase

import torchao
from torchao.dtypes import AffineQuantizedTensor
from torchao.qtensor import select_linear_kernel
from torchao.quantization import (
    Int8DynActInt4WeightQuantizer,
    UnsupportedWeight,
    change_linear_weights_to_int4_woqtensors,
    change_linear_weights_to_int8_dqtensors,
    change_linear_weights_to_int8_woqtensors,
    get_apply_int4wo_quant,
    get_apply_int8dyn_quant,
    get_apply_int8wo_quant,
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
    quantize_,
)

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# (name, config factory, min SQNR in dB of a single layer's output vs float, kernel on CPU for N=64)
CONFIGS = [
    ("int8wo", int8_weight_only, 35.0, "cpu_int8_weight_only"),
    ("int4wo-32", lambda: int4_weight_only(group_size=32), 16.0, "cpu_int4_weight_only"),
    ("int8dq", int8_dynamic_activation_int8_weight, 30.0, "cpu_int8_dynamic"),
    ("8da4w-32", lambda: int8_dynamic_activation_int4_weight(32), 15.0, "cpu_int8_dynamic_int4"),
]


def sqnr(ref, out):
    ref, out = ref.double(), out.double()
    return (20 * torch.log10(ref.norm() / (ref - out).norm())).item()


class TwoLayers(nn.Module):
    def __init__(self, k=96, hidden=64, n=7):
        super().__init__()
        self.l1 = nn.Linear(k, hidden)
        self.l2 = nn.Linear(hidden, n, bias=False)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


class TestConfigs(TestCase):
    def test_every_config_dtype_and_odd_shape(self):
        for name, make, min_sqnr, _ in CONFIGS:
            for dtype in DTYPES:
                for k, n in [(96, 7), (64, 64)]:
                    torch.manual_seed(0)
                    layer = nn.Linear(k, n).to(dtype)
                    x = torch.randn(3, 5, k).to(dtype)
                    ref = nn.functional.linear(x.double(), layer.weight.double(), layer.bias.double())
                    quantize_(layer, make())
                    self.assertIsInstance(layer.weight, AffineQuantizedTensor)
                    self.assertFalse(layer.weight.requires_grad)
                    out = layer(x)
                    self.assertEqual(out.dtype, dtype)
                    self.assertEqual(tuple(out.shape), (3, 5, n))
                    self.assertGreater(sqnr(ref, out), min_sqnr, msg=f"{name} {dtype} K={k} N={n}")

    def test_cpu_kernel_choice(self):
        x = torch.randn(2, 64)
        for name, make, _, kernel in CONFIGS:
            layer = nn.Linear(64, 64)
            quantize_(layer, make())
            chosen = select_linear_kernel(x, layer.weight)
            self.assertEqual(chosen.name if chosen else None, kernel, msg=name)

    def test_int4_layout_by_shape(self):
        wide, narrow = nn.Linear(64, 32), nn.Linear(64, 7)
        quantize_(wide, int4_weight_only(group_size=32))
        quantize_(narrow, int4_weight_only(group_size=32))
        self.assertEqual(wide.weight.spec.layout, "int4_cpu")
        self.assertEqual(narrow.weight.spec.layout, "int4_packed")  # N % 16 != 0: portable layout, dequantized

    def test_int8_weight_only_error_bound(self):
        """Every dequantized weight is within half a step of the float weight (per-channel symmetric)."""
        torch.manual_seed(0)
        layer = nn.Linear(96, 7)
        w = layer.weight.detach().clone()
        quantize_(layer, int8_weight_only())
        step = w.abs().amax(1, keepdim=True) / 127.5
        self.assertTrue(bool(((layer.weight.dequantize() - w).abs() <= step / 2 + 1e-7).all()))


class TestQuantizeSemantics(TestCase):
    def test_unservable_layer_is_left_in_float_with_a_warning(self):
        model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 16), nn.Linear(96, 16))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quantize_(model, int4_weight_only(group_size=64))
        self.assertIsInstance(model[0].weight, AffineQuantizedTensor)
        self.assertNotIsInstance(model[1].weight, AffineQuantizedTensor)
        self.assertNotIsInstance(model[2].weight, AffineQuantizedTensor)
        messages = [str(w.message) for w in caught if "quantize_" in str(w.message)]
        self.assertEqual(len(messages), 1)
        self.assertExpectedInline(messages[0], """\
quantize_ left 2 layer(s) unchanged:
  1: in_features 32 is not divisible by group_size 64
  2: in_features 96 is not divisible by group_size 64""")

    def test_strict_raises_before_touching_anything(self):
        model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 16))
        before = copy.deepcopy(model.state_dict())
        with self.assertRaisesRegex(UnsupportedWeight, "1: in_features 32 is not divisible by group_size 64"):
            quantize_(model, int4_weight_only(group_size=64), strict=True)
        for key, value in model.state_dict().items():
            self.assertNotIsInstance(value, AffineQuantizedTensor)
            self.assertTrue(torch.equal(value, before[key]))

    def test_failing_apply_function_leaves_model_unchanged(self):
        model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 16))
        originals = [m.weight for m in model]
        calls = []

        def explode_on_second(weight):
            calls.append(weight.shape)
            if len(calls) == 2:
                raise RuntimeError("boom")
            return int8_weight_only()(weight)

        with self.assertRaisesRegex(RuntimeError, "boom"):
            quantize_(model, explode_on_second)
        self.assertEqual([m.weight for m in model], originals)  # same Parameter objects, untouched

    def test_apply_function_must_keep_shape(self):
        model = nn.Sequential(nn.Linear(64, 32))
        with self.assertRaisesRegex(ValueError, r"changed the shape of 0.weight from \(32, 64\) to \(64, 32\)"):
            quantize_(model, lambda w: w.t())

    def test_filter_fn_selects_by_name(self):
        model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 16))
        quantize_(model, int8_weight_only(), filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn == "1")
        self.assertNotIsInstance(model[0].weight, AffineQuantizedTensor)
        self.assertIsInstance(model[1].weight, AffineQuantizedTensor)

    def test_tied_weights_stay_tied(self):
        a, b = nn.Linear(64, 64), nn.Linear(64, 64)
        b.weight = a.weight
        model = nn.Sequential(a, b)
        quantize_(model, int8_weight_only())
        self.assertIs(model[0].weight, model[1].weight)

    def test_quantize_returns_model(self):
        model = TwoLayers()
        self.assertIs(torchao.quantize(model, int8_weight_only()), model)


class TestSeedNames(TestCase):
    def test_get_apply_names_are_the_configs(self):
        self.assertEqual(get_apply_int8wo_quant(), int8_weight_only())
        self.assertEqual(get_apply_int4wo_quant(groupsize=64), int4_weight_only(group_size=64))
        self.assertEqual(get_apply_int8dyn_quant(), int8_dynamic_activation_int8_weight())

    def test_legacy_calls(self):
        torch.manual_seed(0)
        x = torch.randn(4, 64)
        for change, spec_check in [
            (change_linear_weights_to_int8_dqtensors, lambda s: s.act_quant == "int8_per_token_sym"),
            (change_linear_weights_to_int8_woqtensors, lambda s: s.act_quant is None and s.bits == 8),
            (lambda m: change_linear_weights_to_int4_woqtensors(m, groupsize=32), lambda s: s.block_size == (1, 32)),
        ]:
            model = nn.Sequential(nn.Linear(64, 32))
            ref = model(x)
            change(model)
            self.assertTrue(spec_check(model[0].weight.spec))
            self.assertGreater(sqnr(ref, model(x)), 15)

    def test_int8_dyn_act_int4_weight_quantizer(self):
        model = nn.Sequential(nn.Linear(64, 32))
        out = Int8DynActInt4WeightQuantizer(groupsize=32).quantize(model)
        self.assertIs(out, model)
        spec = model[0].weight.spec
        self.assertEqual((spec.block_size, spec.quant_min, spec.quant_max, spec.act_quant),
                         ((1, 32), -8, 7, "int8_per_token_asym"))

    def test_seed_manual_to_aq_loop(self):
        """The seed README's "Quantization Flow" loop, as written."""
        from torchao.dtypes.aqt import to_aq
        from torchao.quantization.quant_primitives import MappingType

        def apply_int8wo_quant(weight):
            mapping_type = MappingType.SYMMETRIC
            target_dtype = torch.int8
            eps = torch.finfo(torch.float32).eps
            zero_point_dtype = torch.int64
            block_size = (1, weight.shape[1])
            return to_aq(weight, mapping_type, block_size, target_dtype, eps=eps, zero_point_dtype=zero_point_dtype)

        model = TwoLayers(k=64, hidden=32, n=16)
        x = torch.randn(3, 64)
        ref = model(x)
        for n, m in model.named_modules():
            if isinstance(m, torch.nn.Linear):
                m.weight = nn.Parameter(apply_int8wo_quant(m.weight))
        self.assertGreater(sqnr(ref, model(x)), 35)
        self.assertEqual(select_linear_kernel(x, model.l1.weight).name, "cpu_int8_weight_only")


class TestWeightBytes(TestCase):
    def test_counts_packed_inner_tensors_and_can_skip_embeddings(self):
        from torchao.utils import weight_bytes

        model = nn.Sequential(nn.Embedding(10, 64), nn.Linear(64, 32, bias=False))
        self.assertEqual(weight_bytes(model), (10 * 64 + 64 * 32) * 4)
        torchao.quantize_(model, int8_weight_only())
        # int8 data (32 x 64 bytes) + one fp32 scale per output channel (+ a zero point if stored)
        inner = model[1].weight.inner_tensors().values()
        linear = sum(t.numel() * t.element_size() for t in inner)
        self.assertGreaterEqual(linear, 32 * 64 + 32 * 4)
        self.assertEqual(weight_bytes(model), 10 * 64 * 4 + linear)
        self.assertEqual(weight_bytes(model, skip_embeddings=True), linear)

    def test_matmul_only_counts_what_the_cpu_int4_kernel_reads(self):
        """The CPU int4 layout keeps the original qparams for exact unpacking; a decode step reads the packed
        nibbles (N * K / 2 bytes) and the bf16 kernel (scale, zero) pairs only."""
        from torchao.utils import weight_bytes

        model = nn.Sequential(nn.Linear(256, 64, bias=False)).to(torch.bfloat16)
        torchao.quantize_(model, torchao.quantization.Int4WeightOnlyConfig(group_size=128))
        self.assertEqual(model[0].weight.spec.layout, "int4_cpu")
        self.assertEqual(weight_bytes(model, matmul_only=True), 64 * 256 // 2 + (256 // 128) * 64 * 2 * 2)
        self.assertGreater(weight_bytes(model), weight_bytes(model, matmul_only=True))


if __name__ == "__main__":
    unittest.main()
