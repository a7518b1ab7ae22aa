"""The seed README's examples (002), as a user copies them ("cuda" swapped for "cpu"), run end to end."""

import runpy
import unittest
from pathlib import Path

import torch
from expecttest import TestCase

HERE = Path(__file__).parent


class TestSeedExamples(TestCase):
    def test_int4_example(self):
        out = runpy.run_path(str(HERE / "int4_example.py"), run_name="__main__")
        self.assertGreater(out["bf16_time"], 0)
        self.assertGreater(out["int4_time"], 0)
        self.assertTrue(hasattr(out["m"]._orig_mod.linear1, "parametrizations"))  # unwrapped for compile
        x = out["example_inputs"][0]
        self.assertEqual(out["m"](x).dtype, torch.bfloat16)

    def test_quantization_flow_and_export_snippets(self):
        out = runpy.run_path(str(HERE / "flow_and_export_example.py"), run_name="__main__")
        self.assertLess(out["max_error"], 0.05)


if __name__ == "__main__":
    unittest.main()
