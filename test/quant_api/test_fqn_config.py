"""FqnToConfig (a config per module name / pattern) through quantize_, and configs to JSON and back
(config_to_dict / config_from_dict, the form transformers' TorchAoConfig stores)."""

import json
import unittest

import torch
import torch.nn as nn
from expecttest import TestCase

from torchao.core.config import config_from_dict, config_to_dict
from torchao.dtypes import AffineQuantizedTensor
from torchao.quant_api.apply import NonFiniteWeight
from torchao.quantization import (
    FqnToConfig,
    MappingType,
    PerTensor,
    ZeroPointDomain,
    float8_dynamic_activation_float8_weight,
    float8_weight_only,
    fqn_matches_fqn_config,
    gptq,
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
    intx_weight_only,
    quantize_,
)
from torchao.quantization.quant_api import AOBaseConfig


def toy():
    torch.manual_seed(0)
    return nn.ModuleDict({
        "attn": nn.Linear(64, 64),
        "mlp": nn.Sequential(nn.Linear(64, 128), nn.Linear(128, 64)),
        "lm_head": nn.Linear(64, 32),
        "embed": nn.Embedding(16, 64),
    })


class TestFqnToConfig(TestCase):
    def test_names_patterns_default_and_none(self):
        model = toy()
        quantize_(model, FqnToConfig({
            "lm_head": None,
            r"re:mlp\.\d": int4_weight_only(group_size=32),
            "_default": int8_weight_only(),
            "embed": int8_weight_only(group_size=32),
        }))
        self.assertEqual(model["attn"].weight.spec.target_dtype, torch.int8)
        self.assertEqual([m.weight.spec.target_dtype for m in model["mlp"]], [torch.uint4, torch.uint4])
        self.assertNotIsInstance(model["lm_head"].weight, AffineQuantizedTensor)
        self.assertEqual(model["embed"].weight.spec.block_size, (1, 32))

    def test_filter_fn_narrows_and_default_only_takes_linear(self):
        model = toy()
        quantize_(model, FqnToConfig({"_default": int8_weight_only()}), filter_fn=lambda m, fqn: fqn != "attn")
        self.assertNotIsInstance(model["attn"].weight, AffineQuantizedTensor)
        self.assertIsInstance(model["lm_head"].weight, AffineQuantizedTensor)
        self.assertNotIsInstance(model["embed"].weight, AffineQuantizedTensor)  # not a Linear

    def test_all_or_nothing_and_bad_keys(self):
        model = toy()
        with torch.no_grad():
            model["lm_head"].weight[0, 0] = float("nan")
        with self.assertRaisesRegex(NonFiniteWeight, "lm_head.weight"):
            quantize_(model, FqnToConfig({"_default": int8_weight_only()}))
        self.assertNotIsInstance(model["attn"].weight, AffineQuantizedTensor)
        with self.assertRaisesRegex(ValueError, "'re:\\(' is not a valid regular expression"):
            FqnToConfig({"re:(": int8_weight_only()})
        with self.assertRaisesRegex(TypeError, "calibrated configs"):
            FqnToConfig({"attn": gptq([torch.zeros(1, 4, dtype=torch.long)])})
        with self.assertRaisesRegex(TypeError, r"FqnToConfig\['attn'\] must be a config"):
            FqnToConfig({"attn": "int8"})

    def test_fqn_matches_fqn_config(self):
        config = FqnToConfig({"mlp.0": int8_weight_only(), "mlp.2.weight": int8_weight_only(),
                              r"re:layers\.\d+\.q": None, "_default": int8_weight_only()})
        self.assertTrue(fqn_matches_fqn_config("mlp.0", config))
        self.assertTrue(fqn_matches_fqn_config("mlp.2", config))  # named by its weight
        self.assertTrue(fqn_matches_fqn_config("mlp.2.weight", config))
        self.assertTrue(fqn_matches_fqn_config("layers.12.q", config))
        self.assertFalse(fqn_matches_fqn_config("mlp.1", config))
        self.assertIs(config.module_fqn_to_config, config.fqn_to_config)


class TestConfigSerialization(TestCase):
    def test_every_config_round_trips_through_json(self):
        configs = [
            int4_weight_only(64), int4_weight_only(32, use_hqq=True), int4_weight_only(128, zero_point_domain=ZeroPointDomain.INT),
            int8_weight_only(), int8_weight_only(group_size=64), int8_dynamic_activation_int8_weight(),
            int8_dynamic_activation_int8_weight(act_mapping_type=MappingType.ASYMMETRIC),
            int8_dynamic_activation_int4_weight(32, mapping_type=MappingType.ASYMMETRIC),
            intx_weight_only(3, 64, use_hqq=True), intx_weight_only(5, None, sym=True),
            float8_weight_only(torch.float8_e5m2), float8_dynamic_activation_float8_weight(granularity=PerTensor()),
            FqnToConfig({"a": int8_weight_only(), "re:b.*": None, "_default": int4_weight_only(32)}),
        ]
        for config in configs:
            self.assertIsInstance(config, AOBaseConfig)
            back = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
            self.assertEqual(back, config)
            self.assertIs(type(back), type(config))
        # the restored config quantizes identically
        w = torch.randn(16, 64)
        restored = config_from_dict(json.loads(json.dumps(config_to_dict(int4_weight_only(32)))))
        self.assertTrue(torch.equal(restored(w).dequantize(), int4_weight_only(32)(w).dequantize()))

    def test_refusals(self):
        with self.assertRaisesRegex(ValueError, "'os.system' is not a known config .* nothing is imported"):
            config_from_dict({"_type": "os.system", "_data": {}})
        with self.assertRaisesRegex(ValueError, r"Int8WeightOnlyConfig has no fields \['evil'\]"):
            config_from_dict({"_type": "Int8WeightOnlyConfig", "_version": 1, "_data": {"evil": 1}})
        with self.assertRaisesRegex(ValueError, "version 99 is newer"):
            config_from_dict({"_type": "Int8WeightOnlyConfig", "_version": 99, "_data": {}})
        with self.assertRaisesRegex(TypeError, "GPTQConfig is not serializable"):
            config_to_dict(gptq([torch.zeros(1, 4, dtype=torch.long)]))
        with self.assertRaisesRegex(ValueError, "'float9' is not a ZeroPointDomain|unknown dtype 'float9'"):
            config_from_dict({"_type": "Float8WeightOnlyConfig", "_data": {"weight_dtype": {"_type": "torch.dtype",
                                                                                            "_data": "float9"}}})


if __name__ == "__main__":
    unittest.main()
