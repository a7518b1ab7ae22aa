"""Every tutorial runs end to end in its fast mode, as a user would run it."""

import subprocess
import sys
import unittest
from pathlib import Path

from expecttest import TestCase

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"


class TestTutorials(TestCase):
    def run_tutorial(self, name):
        result = subprocess.run([sys.executable, str(TUTORIALS / name), "--fast"], capture_output=True, text=True,
                                timeout=600)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        return result.stdout

    def test_quick_start(self):
        self.assertIn("int4 weight-only g128", self.run_tutorial("quick_start.py"))

    def test_autoquant_cache(self):
        self.assertIn("with 0 new timings", self.run_tutorial("autoquant_cache.py"))

    def test_extending(self):
        out = self.run_tutorial("extending.py")
        self.assertIn("bitpacked", out)
        self.assertIn("sign_magnitude", out)

    def test_calibrated_quantization(self):
        self.assertIn("autoround w3g128", self.run_tutorial("calibrated_quantization.py"))

    def test_deploy_aoti(self):
        out = self.run_tutorial("deploy_aoti.py")
        self.assertIn("batch 1: relative error vs eager", out)
        self.assertIn("batch 7: relative error vs eager", out)

    def test_huggingface(self):
        out = self.run_tutorial("huggingface.py")
        self.assertIn("reloaded logits bit-identical: True; compiled: True", out)
        self.assertIn("reloaded bit-identical: True", out.split("mixed int4 MLP")[1])

    def test_serve_elsewhere(self):
        out = self.run_tutorial("serve_elsewhere.py")
        for fmt in ("auto_round", "gptq", "compressed_tensors"):
            self.assertRegex(out, rf"{fmt} +[\d.]+ MB; torchao.load_quantized: logits identical True")
        self.assertIn("our weights exactly: True", out.split("compressed-tensors'")[1])
        self.assertIn("our weights exactly: True", out.split("gguf's reader")[1])
        self.assertRegex(out, r"auto-round's loader \(auto_round_extension[\w.]*\): argmax agreement (0\.9[89]|1\.000)")


if __name__ == "__main__":
    unittest.main()
