"""config_for_spec names the config that produced a weight's format; describe_quantized_weights gives a
config that, applied to the float model, produces the same formats layer by layer (and is serializable)."""

import unittest

import torch
import torch.nn as nn
from expecttest import TestCase

from torchao.quant_api.config_serialization import config_from_dict, config_to_dict
from torchao.quant_api.configs import (
    Float8DynamicActivationFloat8WeightConfig,
    Float8WeightOnlyConfig,
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt4WeightConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    PerTensor,
)
from torchao.qtensor import MappingType, ZeroPointDomain
from torchao.quant_api.fqn_config import FqnToConfig
from torchao.quant_api.apply import quantize_
from torchao.quant_api.transformers_link import config_for_spec, describe_quantized_weights

CONFIGS = [
    Int8WeightOnlyConfig(), Int8WeightOnlyConfig(group_size=32),
    Int4WeightOnlyConfig(group_size=32), Int4WeightOnlyConfig(group_size=64, zero_point_domain=ZeroPointDomain.INT),
    Int8DynamicActivationInt8WeightConfig(), Int8DynamicActivationInt8WeightConfig(act_mapping_type=MappingType.ASYMMETRIC),
    Int8DynamicActivationInt4WeightConfig(group_size=32),
    Int8WeightOnlyConfig(group_size=32, int8_activations=True),
    Int4WeightOnlyConfig(group_size=64, int8_activations=True),
    Int4WeightOnlyConfig(group_size=32, zero_point_domain=ZeroPointDomain.INT, int8_activations=True),
    Int8DynamicActivationInt4WeightConfig(group_size=64, mapping_type=MappingType.ASYMMETRIC),
    IntxWeightOnlyConfig(bits=3, group_size=32), IntxWeightOnlyConfig(bits=6, group_size=None, sym=True),
    IntxWeightOnlyConfig(bits=2, group_size=16), IntxWeightOnlyConfig(bits=3, group_size=32, zero_point_domain=ZeroPointDomain.FLOAT),
    IntxWeightOnlyConfig(bits=5, group_size=32, zero_point_domain=ZeroPointDomain.FLOAT),
    Float8WeightOnlyConfig(), Float8DynamicActivationFloat8WeightConfig(granularity=PerTensor()),
    Float8DynamicActivationFloat8WeightConfig(weight_dtype=torch.float8_e5m2),
]


class TestConfigForSpec(TestCase):
    def test_each_config_is_named_by_its_weights(self):
        w = torch.randn(64, 128, dtype=torch.bfloat16)
        for config in CONFIGS:
            with self.subTest(config):
                described = config_for_spec(config(w).spec)
                self.assertEqual(config_from_dict(config_to_dict(described)), described)
                # the described config produces the same format (and the same integers) again
                again = described(w)
                self.assertEqual(again.spec, config(w).spec)
                self.assertTrue(torch.equal(again.dequantize(), config(w).dequantize()))


class TestDescribeModel(TestCase):
    def model(self):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 32), nn.Linear(32, 8))

    def test_one_config(self):
        model = self.model()
        quantize_(model, Int4WeightOnlyConfig(group_size=32))
        self.assertEqual(describe_quantized_weights(model), Int4WeightOnlyConfig(group_size=32))
        self.assertIsNone(describe_quantized_weights(self.model()))

    def test_mixed_formats_reproduce(self):
        model = self.model()
        quantize_(model, FqnToConfig({"0": Int8WeightOnlyConfig(), "1": Int4WeightOnlyConfig(32),
                                      "2": Int4WeightOnlyConfig(32)}))
        described = describe_quantized_weights(model)
        self.assertEqual(described, FqnToConfig({"0": Int8WeightOnlyConfig(), "3": None,
                                                 "_default": Int4WeightOnlyConfig(32)}))
        fresh = self.model()
        quantize_(fresh, config_from_dict(config_to_dict(described)))
        self.assertEqual({n: getattr(m.weight, "spec", None) for n, m in fresh.named_children()},
                         {n: getattr(m.weight, "spec", None) for n, m in model.named_children()})


if __name__ == "__main__":
    unittest.main()
