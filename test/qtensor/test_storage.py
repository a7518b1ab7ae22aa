"""A quantized weight answers storage questions the way safetensors and transformers ask them: the storage
of its packed data, shared by tied weights, distinct for distinct weights."""

import unittest

import torch
import torch.nn as nn
from expecttest import TestCase

from torchao.quantization import int4_weight_only, int8_weight_only, quantize_


class TestStorage(TestCase):
    def test_storage_ptr_and_transformers_tie_check(self):
        from safetensors.torch import storage_ptr
        from transformers.pytorch_utils import id_tensor_storage

        for config in (int8_weight_only(), int4_weight_only(group_size=32)):
            model = nn.ModuleDict({"a": nn.Linear(64, 32), "b": nn.Linear(64, 32), "c": nn.Linear(64, 32)})
            model["c"].weight = model["a"].weight  # tied
            quantize_(model, config)
            a, b, c = (model[k].weight for k in "abc")
            self.assertIs(a, c)
            packed = next(iter(a.inner_tensors().values()))
            self.assertEqual(storage_ptr(a), packed.untyped_storage().data_ptr())
            self.assertEqual(id_tensor_storage(a), id_tensor_storage(c))
            self.assertNotEqual(id_tensor_storage(a), id_tensor_storage(b))


if __name__ == "__main__":
    unittest.main()
