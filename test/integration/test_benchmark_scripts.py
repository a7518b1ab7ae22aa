"""The benchmark scripts run end to end in their quick modes (so they never rot): generate.py through
``python -m torchao bench``, and its static-cache Llama against transformers' logits."""

import subprocess
import sys
import unittest
from pathlib import Path

import torch
from expecttest import TestCase
from testbed import PYLLAMA

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


class TestGenerate(TestCase):
    def test_quick_run_prints_the_table(self):
        result = subprocess.run([sys.executable, "-m", "torchao", "bench", "--quick", "--variants", "float", "int8wo",
                                 "--batch", "1", "--modes", "eager"], capture_output=True, text=True, timeout=900)
        self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])
        rows = [line for line in result.stdout.splitlines() if line.startswith("| float") or line.startswith("| int8wo")]
        self.assertEqual(len(rows), 2, msg=result.stdout)
        self.assertIn("| 1.00x |", rows[0])

    def test_eval_runs_on_the_packaged_test_bed(self):
        result = subprocess.run([sys.executable, "-m", "torchao", "eval", "--quick", "--methods", "rtn", "--models",
                                 "pyllama", "--settings", "W4G128"], capture_output=True, text=True, timeout=900)
        self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])
        self.assertRegex(result.stdout, r"\| pyllama-5m \| W4G128 \| rtn \| ppl \d+\.\d+ \|")

    def test_eval_names_a_model_directory_it_cannot_use(self):
        result = subprocess.run([sys.executable, "-m", "torchao", "eval", "--model", "/no/such/model"],
                                capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 2)
        self.assertIn("/no/such/model has no val.txt", result.stderr)

    def test_static_cache_llama_matches_transformers(self):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            from llama import Llama
        finally:
            sys.path.remove(str(BENCHMARKS))
        from transformers import AutoModelForCausalLM

        ids = torch.randint(0, 4096, (2, 12), generator=torch.Generator().manual_seed(0))
        ours = Llama.from_pretrained(PYLLAMA, torch.float32)
        reference = AutoModelForCausalLM.from_pretrained(PYLLAMA, dtype=torch.float32).eval()
        with torch.no_grad():
            expected = reference(ids).logits
            torch.testing.assert_close(ours(ids), expected, atol=1e-4, rtol=1e-4)
            # prefill 8 tokens into the cache, then decode the rest one at a time
            ours.setup_caches(2, 16)
            steps = [ours(ids[:, :8], torch.arange(8))]
            steps += [ours(ids[:, i:i + 1], torch.tensor([i])) for i in range(8, 12)]
            torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-4, rtol=1e-4)


if __name__ == "__main__":
    unittest.main()
