"""Names that code of the torchao 0.5-0.8 era imports, used the way that era's docs and tests used them."""

import unittest

import torch
from expecttest import TestCase


class TestUtils(TestCase):
    def test_version_flags_and_helpers(self):
        from torchao.utils import (
            TORCH_VERSION_AT_LEAST_2_2,
            TORCH_VERSION_AT_LEAST_2_5,
            TORCH_VERSION_AT_LEAST_2_6,
            benchmark_model,
            is_fbcode,
            unwrap_tensor_subclass,
        )

        self.assertTrue(TORCH_VERSION_AT_LEAST_2_2 and TORCH_VERSION_AT_LEAST_2_5 and TORCH_VERSION_AT_LEAST_2_6)
        self.assertFalse(is_fbcode())
        self.assertTrue(callable(benchmark_model) and callable(unwrap_tensor_subclass))

    def test_version_check_ignores_suffixes(self):
        from torchao._compat import torch_version_at_least

        major, minor = (int(v) for v in torch.__version__.split(".")[:2])
        self.assertTrue(torch_version_at_least(f"{major}.{minor}"))
        self.assertFalse(torch_version_at_least(f"{major}.{minor + 1}"))
        self.assertFalse(torch_version_at_least(f"{major + 1}.0"))


class TestQuantPrimitives(TestCase):
    def test_fake_quantize_affine_cachemask(self):
        from torchao.quantization.quant_primitives import (
            MappingType,
            choose_qparams_affine,
            fake_quantize_affine,
            fake_quantize_affine_cachemask,
        )

        torch.manual_seed(0)
        x = torch.randn(4, 32)
        block_size = (1, 32)
        scale, zero_point = choose_qparams_affine(x, MappingType.ASYMMETRIC, block_size, torch.uint8, 0, 255)
        scale = scale * 0.5  # half the range: the tails now clip
        out, mask = fake_quantize_affine_cachemask(x, block_size, scale, zero_point, torch.uint8, 0, 255)
        self.assertTrue(torch.equal(out, fake_quantize_affine(x, block_size, scale, zero_point, torch.uint8, 0, 255)))
        # float64 reference of the unclamped integers
        q = torch.round(x.double() / scale.double().reshape(4, 1)) + zero_point.double().reshape(4, 1)
        self.assertTrue(torch.equal(mask, (q >= 0) & (q <= 255)))
        self.assertTrue(0 < int(mask.sum()) < x.numel())

    def test_choose_qparams_affine_with_min_max_equals_choose_qparams_affine(self):
        from torchao.quantization.quant_primitives import (
            MappingType,
            ZeroPointDomain,
            choose_qparams_affine,
            choose_qparams_affine_with_min_max,
        )

        torch.manual_seed(0)
        x = torch.randn(8, 64)
        block_size = (1, 16)
        min_val = x.reshape(8, 4, 16).amin(-1)
        max_val = x.reshape(8, 4, 16).amax(-1)
        for mapping, domain, dtype in [(MappingType.SYMMETRIC, ZeroPointDomain.INT, torch.int8),
                                       (MappingType.ASYMMETRIC, ZeroPointDomain.INT, torch.uint8),
                                       (MappingType.ASYMMETRIC, ZeroPointDomain.FLOAT, torch.uint4)]:
            expected = choose_qparams_affine(x, mapping, block_size, dtype, zero_point_domain=domain,
                                             preserve_zero=domain != ZeroPointDomain.FLOAT)
            got = choose_qparams_affine_with_min_max(min_val, max_val, mapping, block_size, dtype,
                                                     zero_point_domain=domain,
                                                     preserve_zero=domain != ZeroPointDomain.FLOAT)
            self.assertTrue(torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]), msg=mapping)


class TestQuantizationUtils(TestCase):
    def test_compute_error_is_sqnr(self):
        from torchao.quantization.utils import compute_error

        x = torch.randn(100, dtype=torch.float64)
        noise = 0.01 * torch.randn(100, dtype=torch.float64)
        expected = 20 * torch.log10(x.norm() / noise.norm())
        self.assertAlmostEqual(compute_error(x, x + noise).item(), expected.item(), places=4)

    def test_dynamically_quantize_per_channel(self):
        from torchao.quantization.utils import dynamically_quantize_per_channel

        torch.manual_seed(0)
        x = torch.randn(16, 48)
        q, scale, zero_point = dynamically_quantize_per_channel(x, -128, 127, torch.int8)
        self.assertEqual((q.dtype, scale.shape, zero_point.dtype), (torch.int8, torch.Size([16]), torch.int64))
        expected_scale = x.abs().amax(1).double() / 127.5
        torch.testing.assert_close(scale.double(), expected_scale, rtol=1e-6, atol=0)
        # the primitives' arithmetic (float32 x * (1 / scale), as PyTorch's quantized_decomposed ops)
        q_ref = torch.clamp(torch.round(x * (1.0 / scale.unsqueeze(1))), -128, 127)
        self.assertTrue(torch.equal(q.long(), q_ref.long()))

    def test_quantize_activation_per_token_absmax(self):
        from torchao.quantization.utils import quantize_activation_per_token_absmax

        torch.manual_seed(0)
        t = torch.randn(2, 5, 32)
        q, scale = quantize_activation_per_token_absmax(t)
        self.assertEqual((q.dtype, tuple(scale.shape)), (torch.int8, (2, 5, 1)))
        self.assertLessEqual(int(q.abs().max()), 127)
        torch.testing.assert_close(scale.double(), t.abs().amax(-1, keepdim=True).double() / 127, rtol=1e-6, atol=0)
        self.assertLess(((q * scale - t).abs() / scale).max().item(), 0.5 + 1e-4)


if __name__ == "__main__":
    unittest.main()


class TestConfigArgumentsOfThatEra(TestCase):
    def test_quantize_with_set_inductor_config_and_device(self):
        import torch._inductor.config as inductor_config

        from torchao.quantization import int8_weight_only, quantize_

        inductor_config.force_fuse_int_mm_with_mul = False
        model = torch.nn.Sequential(torch.nn.Linear(64, 32))
        quantize_(model, int8_weight_only(), None, False, "cpu")
        self.assertFalse(inductor_config.force_fuse_int_mm_with_mul)  # False leaves the config alone
        quantize_(torch.nn.Sequential(torch.nn.Linear(64, 32)), int8_weight_only())
        self.assertTrue(inductor_config.force_fuse_int_mm_with_mul)
        self.assertEqual(model[0].weight.device.type, "cpu")
        meta = torch.nn.Sequential(torch.nn.Linear(64, 32))
        quantize_(meta, int8_weight_only(), device="meta")
        self.assertEqual((meta[0].weight.device.type, meta[0].bias.device.type), ("meta", "meta"))

    def test_int4_weight_only_with_layout_objects_and_integer_zero_points(self):
        from torchao.dtypes import PlainLayout, TensorCoreTiledLayout
        from torchao.quantization import ZeroPointDomain, int4_weight_only, quantize_

        torch.manual_seed(0)
        w = torch.randn(32, 128)
        for kwargs, domain in [(dict(layout=TensorCoreTiledLayout(inner_k_tiles=8)), "FLOAT"),
                               (dict(zero_point_domain=ZeroPointDomain.INT), "INT"),
                               (dict(use_hqq=True), "FLOAT"),
                               (dict(use_hqq=True, zero_point_domain=ZeroPointDomain.INT), "INT"),
                               (dict(layout=PlainLayout()), "FLOAT")]:
            layer = torch.nn.Linear(128, 32, bias=False)
            layer.weight.data.copy_(w)
            quantize_(layer, int4_weight_only(group_size=64, **kwargs))
            self.assertEqual(layer.weight.spec.zero_point_domain.name, domain, msg=kwargs)
            q, scale, zero = layer.weight.get_plain()
            self.assertTrue(0 <= int(q.min()) and int(q.max()) <= 15)
            x = torch.randn(3, 128)
            # within one step per weight of the float result
            self.assertLess((layer(x) - x @ w.t()).abs().max().item(), (x.abs() @ scale.repeat_interleave(64, 1).t()).max().item())

    def test_int8_dynamic_activation_arguments(self):
        from torchao.dtypes import PlainLayout, SemiSparseLayout
        from torchao.quantization import (
            MappingType,
            int8_dynamic_activation_int4_weight,
            int8_dynamic_activation_int8_weight,
            quantize_,
        )

        for config, act in [(int8_dynamic_activation_int8_weight(MappingType.SYMMETRIC, False, PlainLayout()), "sym"),
                            (int8_dynamic_activation_int8_weight(act_mapping_type=MappingType.ASYMMETRIC), "asym"),
                            (int8_dynamic_activation_int4_weight(32, PlainLayout(), MappingType.ASYMMETRIC,
                                                                 MappingType.SYMMETRIC), "sym"),
                            (int8_dynamic_activation_int4_weight(group_size=32), "asym")]:
            layer = torch.nn.Linear(64, 16)
            quantize_(layer, config)
            self.assertTrue(layer.weight.spec.act_quant.endswith(act), msg=config)
            self.assertEqual(tuple(layer(torch.randn(2, 64)).shape), (2, 16))
        with self.assertRaisesRegex(ValueError, "SemiSparseLayout .* is not supported on this device"):
            int8_dynamic_activation_int8_weight(layout=SemiSparseLayout())
        with self.assertRaisesRegex(ValueError, "weight_only_decode=True is not supported"):
            int8_dynamic_activation_int8_weight(weight_only_decode=True)

    def test_int8_weight_only_groups_and_embeddings(self):
        from torchao.quantization import int8_weight_only, quantize_

        torch.manual_seed(0)
        model = torch.nn.ModuleDict({"emb": torch.nn.Embedding(50, 64), "proj": torch.nn.Linear(64, 16)})
        ids = torch.tensor([[1, 7, 49]])
        ref_rows = model["emb"](ids)
        quantize_(model, int8_weight_only(group_size=32),
                  filter_fn=lambda m, fqn: isinstance(m, (torch.nn.Linear, torch.nn.Embedding)))
        self.assertEqual(model["emb"].weight.spec.block_size, (1, 32))
        rows = model["emb"](ids)
        torch.testing.assert_close(rows, model["emb"].weight.dequantize()[ids], atol=0, rtol=0)
        self.assertLess((rows - ref_rows).abs().max().item(), ref_rows.abs().max().item() / 127)


class TestModulesOfThatEra(TestCase):
    def test_autoquant_module_and_candidate_classes(self):
        from test_autoquant import COSTS, FakeTimer, Toy

        import torchao.quantization
        from torchao.dtypes import AffineQuantizedTensor
        from torchao.quantization.autoquant import (
            AUTOQUANT_CACHE,
            DEFAULT_AUTOQUANT_CLASS_LIST,
            AQInt4G64WeightOnlyQuantizedLinearWeight,
            AQInt8DynamicallyQuantizedLinearWeight,
            AQWeightOnlyQuantizedLinearWeight,
            autoquant,
        )

        self.assertIs(AUTOQUANT_CACHE, torchao.quantization.AUTOQUANT_CACHE)
        self.assertTrue(callable(torchao.quantization.autoquant))  # the package attribute is the function
        AUTOQUANT_CACHE.clear()
        model = Toy()
        autoquant(model, torch.randn(4, 64), qtensor_class_list=[AQInt8DynamicallyQuantizedLinearWeight,
                                                                  AQInt4G64WeightOnlyQuantizedLinearWeight],
                  timer=FakeTimer(COSTS), quiet=True)
        for choice in model.autoquant_plan.choices:
            self.assertEqual(set(choice.times), {"float", "int8dq", "int4wo-64"})
        AUTOQUANT_CACHE.clear()
        autoquant(Toy(), torch.randn(4, 64), qtensor_class_list=DEFAULT_AUTOQUANT_CLASS_LIST, timer=FakeTimer(COSTS),
                  quiet=True)
        w = torch.randn(32, 64)
        q = AQWeightOnlyQuantizedLinearWeight.from_float(w)
        self.assertIsInstance(q, AffineQuantizedTensor)
        self.assertEqual(q.int_data.dtype, torch.int8)
        AUTOQUANT_CACHE.clear()

    def test_subclass_from_float(self):
        from torchao.dtypes import AffineQuantizedTensor
        from torchao.quantization.subclass import (
            Int4WeightOnlyQuantizedLinearWeight,
            Int8DynamicallyQuantizedLinearWeight,
            Int8WeightOnlyQuantizedLinearWeight,
        )

        torch.manual_seed(0)
        lin = torch.nn.Linear(64, 32)
        x = torch.randn(2, 64)
        ref = lin(x)
        for cls, kwargs, bound in [(Int8WeightOnlyQuantizedLinearWeight, {}, 0.05),
                                   (Int8DynamicallyQuantizedLinearWeight, {}, 0.05),
                                   (Int4WeightOnlyQuantizedLinearWeight, {"groupsize": 32, "inner_k_tiles": 8}, 0.2)]:
            w = cls.from_float(lin.weight.detach(), **kwargs)
            self.assertIsInstance(w, AffineQuantizedTensor)
            out = torch.nn.functional.linear(x, w, lin.bias)
            self.assertLess(((out - ref).norm() / ref.norm()).item(), bound, msg=cls.__name__)

    def test_gptq_module_names_and_replace_walk(self):
        from torchao.quant_api.evaluation import InputRecorder as ours
        from torchao.quantization.GPTQ import (
            InputRecorder,
            Int4WeightOnlyGPTQQuantizer,
            Int8DynActInt4WeightQuantizer,
            TransformerEvalWrapper,
        )
        from torchao.quantization.quant_api import _replace_with_custom_fn_if_matches_filter

        self.assertIs(InputRecorder, ours)
        self.assertTrue(all(callable(c) for c in (Int4WeightOnlyGPTQQuantizer, Int8DynActInt4WeightQuantizer,
                                                    TransformerEvalWrapper)))
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(8, 4)))
        seen = []
        out = _replace_with_custom_fn_if_matches_filter(
            model, lambda m: torch.nn.Identity(),
            lambda m, fqn: seen.append(fqn) or isinstance(m, torch.nn.Linear))
        self.assertIs(out, model)
        self.assertIsInstance(model[0], torch.nn.Identity)
        self.assertIsInstance(model[2][0], torch.nn.Identity)
        self.assertIn("2.0", seen)

    def test_smoothquant_names(self):
        from torchao.quantization.smoothquant import (
            SmoothFakeDynamicallyQuantizedLinear,
            set_smooth_fq_attribute,
            smooth_fq_linear_to_inference,
            swap_linear_with_smooth_fq_linear,
        )

        model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        swap_linear_with_smooth_fq_linear(model)
        self.assertIsInstance(model[0], SmoothFakeDynamicallyQuantizedLinear)
        set_smooth_fq_attribute(model, "alpha", 0.75)
        self.assertEqual({m.alpha for m in model.modules() if isinstance(m, SmoothFakeDynamicallyQuantizedLinear)},
                         {0.75})
        with self.assertRaisesRegex(AttributeError, "has no attribute 'nope'"):
            set_smooth_fq_attribute(model, "nope", 1)
        model.train()
        model(torch.randn(8, 16))
        smooth_fq_linear_to_inference(model)
        self.assertEqual(tuple(model(torch.randn(3, 16)).shape), (3, 4))


class TestGroupwiseHelpersOfThatEra(TestCase):
    def test_groupwise_affine_round_trip(self):
        from torchao.quantization.utils import (
            get_groupwise_affine_qparams,
            groupwise_affine_dequantize_tensor,
            groupwise_affine_dequantize_tensor_from_qparams,
            groupwise_affine_quantize_tensor,
            groupwise_affine_quantize_tensor_from_qparams,
            pack_tinygemm_scales_and_zeros,
            unpack_tinygemm_scales_and_zeros,
        )

        torch.manual_seed(0)
        w = torch.randn(16, 128, dtype=torch.bfloat16)
        q, scales_and_zeros = groupwise_affine_quantize_tensor(w, n_bit=4, groupsize=64, dtype=torch.bfloat16)
        self.assertEqual((q.dtype, tuple(q.shape), tuple(scales_and_zeros.shape)), (torch.int32, (16, 128), (2, 16, 2)))
        self.assertTrue(0 <= int(q.min()) and int(q.max()) <= 15)
        scales, zeros = get_groupwise_affine_qparams(w, 4, 64, torch.bfloat16)
        self.assertTrue(torch.equal(pack_tinygemm_scales_and_zeros(scales, zeros), scales_and_zeros))
        self.assertTrue(all(torch.equal(a, b) for a, b in zip(unpack_tinygemm_scales_and_zeros(scales_and_zeros),
                                                              (scales, zeros))))
        self.assertTrue(torch.equal(groupwise_affine_quantize_tensor_from_qparams(w, scales, zeros, 4, 64), q))
        # the float zero point convention: w ~ (q - 8) * scale + zero
        expected = (q.double() - 8) * scales.double().repeat_interleave(64, 1) + zeros.double().repeat_interleave(64, 1)
        back = groupwise_affine_dequantize_tensor(q, scales_and_zeros, 4, 64)
        torch.testing.assert_close(back.double(), expected.to(torch.bfloat16).double(), atol=0, rtol=0)
        self.assertTrue(torch.equal(back, groupwise_affine_dequantize_tensor_from_qparams(q, scales, zeros, 4, 64)))
        step = scales.double().repeat_interleave(64, 1)
        self.assertTrue(bool(((back.double() - w.double()).abs() <= step * 0.51 + 1e-2).all()))

    def test_get_group_qparams_symmetric(self):
        from torchao.quantization.utils import get_group_qparams_symmetric

        torch.manual_seed(0)
        w = torch.randn(8, 96)
        scale, zero = get_group_qparams_symmetric(w, n_bit=4, groupsize=32)
        self.assertEqual((tuple(scale.shape), tuple(zero.shape)), ((8, 3), (8, 3)))
        expected = w.reshape(8, 3, 32).abs().amax(-1).double() / 7.5
        torch.testing.assert_close(scale.double(), expected, rtol=1e-6, atol=0)
        self.assertTrue(torch.equal(zero, torch.zeros_like(zero)))
        with self.assertRaisesRegex(ValueError, "groupsize 1 must be > 1"):
            get_group_qparams_symmetric(w, groupsize=1)

    def test_logging_hook_counts_input_shapes(self):
        from torchao.quantization.utils import _apply_logging_hook, fqn_to_op_to_shape_to_count

        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        handles = _apply_logging_hook(model)
        model(torch.randn(3, 4))
        model(torch.randn(3, 4))
        for h in handles:
            h.remove()
        self.assertEqual(fqn_to_op_to_shape_to_count["2"]["Linear"][((3, 8),)], 2)
        self.assertEqual(fqn_to_op_to_shape_to_count["0"]["Linear"][((3, 4),)], 2)


class TestPrimitiveErrorsAndConstructorsOfThatEra(TestCase):
    def test_errors_are_also_assertion_errors_with_the_old_text(self):
        from torchao.quantization.quant_primitives import (
            MappingType,
            choose_qparams_affine,
            dequantize_affine,
            quantize_affine,
        )

        x = torch.randn(4, 8)
        cases = [
            (lambda: choose_qparams_affine(torch.randint(0, 3, (4, 8)), MappingType.SYMMETRIC, (1, 8), torch.int8),
             "Unsupported input dtype: torch.int64"),
            (lambda: choose_qparams_affine(x, MappingType.SYMMETRIC, (1, 8), torch.int8, preserve_zero=False),
             "preserve_zero == False is not supported for symmetric quantization"),
            (lambda: choose_qparams_affine(x, MappingType.SYMMETRIC, (1, 8), torch.int8, -300, 127),
             "quant_min out of bound for dtype, quant_min_lower_bound: -128 quant_min: -300"),
            (lambda: quantize_affine(x, (1, 1, 8), torch.ones(4), torch.zeros(4), torch.int8),
             r"Got input dim:2, block_size: \(1, 1, 8\)"),
            (lambda: dequantize_affine(torch.zeros(4, 8, dtype=torch.int32), (1, 8), torch.ones(4), torch.zeros(4),
                                       torch.int8), "Expected: torch.int8, got: torch.int32"),
        ]
        for fn, old_text in cases:
            with self.assertRaisesRegex(AssertionError, old_text):
                fn()
            with self.assertRaises((ValueError, TypeError)):
                fn()

    def test_to_affine_quantized_intx_and_static(self):
        from torchao.dtypes import PlainLayout, to_affine_quantized_intx, to_affine_quantized_intx_static
        from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine

        torch.manual_seed(0)
        w = torch.randn(16, 64)
        dynamic = to_affine_quantized_intx(w, MappingType.ASYMMETRIC, (1, 32), torch.uint8, _layout=PlainLayout())
        scale, zero_point = choose_qparams_affine(w, MappingType.ASYMMETRIC, (1, 32), torch.uint8)
        static = to_affine_quantized_intx_static(w, scale, zero_point, (1, 32), torch.uint8)
        self.assertTrue(torch.equal(dynamic.dequantize(), static.dequantize()))
        # static qparams from other data: values outside their range clamp
        static_small = to_affine_quantized_intx_static(w, scale / 4, zero_point, (1, 32), torch.uint8)
        self.assertEqual(int(static_small.get_plain()[0].max()), 255)


class TestHQQPrimitiveOfThatEra(TestCase):
    def test_choose_qparams_and_quantize_affine_hqq(self):
        from torchao.quantization.quant_primitives import choose_qparams_and_quantize_affine_hqq

        torch.manual_seed(0)
        w = torch.randn(32, 128)
        errors = {}
        for optimize in (False, True):
            q, scale, zero, shape = choose_qparams_and_quantize_affine_hqq(w, nbits=4, group_size=64,
                                                                           optimize=optimize, compute_dtype=torch.float32)
            self.assertEqual((q.dtype, shape, tuple(scale.shape)), (torch.uint8, (32, 128), (32, 2)))
            dq = (q.float() - zero.repeat_interleave(64, 1)) * scale.repeat_interleave(64, 1)
            errors[optimize] = (dq - w).pow(2).sum().item()
        self.assertLess(errors[True], errors[False])


class TestFloat8Configs(TestCase):
    def test_float8_weight_only_values_and_outputs(self):
        from torchao.quantization import float8_weight_only, quantize_

        torch.manual_seed(0)
        for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            layer = torch.nn.Linear(96, 40).to(torch.bfloat16)
            w = layer.weight.detach().float()
            quantize_(layer, float8_weight_only(dtype))
            q, scale, _ = layer.weight.get_plain()
            self.assertEqual((q.dtype, scale.dtype, tuple(scale.shape)), (dtype, torch.float32, (40,)))
            fmax = torch.finfo(dtype).max
            torch.testing.assert_close(scale.double(), w.abs().amax(1).double() / fmax, rtol=1e-6, atol=0)
            expected_q = torch.clamp(w * (1.0 / scale.unsqueeze(1)), -fmax, fmax).to(dtype)
            self.assertTrue(torch.equal(q.view(torch.uint8), expected_q.view(torch.uint8)))
            x = torch.randn(3, 96, dtype=torch.bfloat16)
            ref = torch.nn.functional.linear(x.double(), layer.weight.dequantize(torch.float64), layer.bias.double())
            self.assertLess((layer(x).double() - ref).abs().max().item(), 0.01 * ref.abs().max().item())

    def test_float8_dynamic_activation_and_granularity(self):
        from torchao.quantization import (
            PerRow,
            PerTensor,
            float8_dynamic_activation_float8_weight,
            quantize_,
        )

        torch.manual_seed(0)
        for granularity, scales in ((PerRow(), 40), (PerTensor(), 1)):
            layer = torch.nn.Linear(96, 40)
            x = torch.randn(5, 96)
            ref = layer(x)
            quantize_(layer, float8_dynamic_activation_float8_weight(granularity=granularity))
            self.assertEqual(layer.weight.get_plain()[1].numel(), scales)
            self.assertEqual(layer.weight.spec.act_quant, "float8_e4m3fn_per_token")
            out = layer(x)
            self.assertLess(((out - ref).norm() / ref.norm()).item(), 0.08)
            exported = torch.export.export(layer, (x,))
            self.assertTrue(torch.equal(exported.module()(x), out))
        with self.assertRaisesRegex(ValueError, "weight_dtype must be one of"):
            float8_dynamic_activation_float8_weight(weight_dtype=torch.int8)


class TestInt8DynActInt4WeightLinear(TestCase):
    def test_module_matches_the_config_and_loads_its_state_dict(self):
        from torchao.quantization import int8_dynamic_activation_int4_weight, quantize_
        from torchao.quantization.GPTQ import Int8DynActInt4WeightLinear

        torch.manual_seed(0)
        linear = torch.nn.Linear(128, 24)
        module = Int8DynActInt4WeightLinear.from_linear(linear, groupsize=32)
        reference = torch.nn.Linear(128, 24)
        reference.load_state_dict(linear.state_dict())
        quantize_(reference, int8_dynamic_activation_int4_weight(group_size=32))
        x = torch.randn(4, 128)
        torch.testing.assert_close(module(x), reference(x), atol=1e-5, rtol=1e-5)
        fresh = Int8DynActInt4WeightLinear(128, 24, groupsize=32)
        fresh.load_state_dict(module.state_dict())
        self.assertEqual(sorted(module.state_dict()), ["bias", "scales", "weight", "zeros"])
        self.assertTrue(torch.equal(fresh(x), module(x)))
        with self.assertRaisesRegex(ValueError, "in_features 100 is not divisible by groupsize 32"):
            Int8DynActInt4WeightLinear(100, 8, groupsize=32)
