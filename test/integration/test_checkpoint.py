"""save_quantized / load_quantized: round trips, transformers directories, and every corrupt-file case
(each raises CheckpointError naming the tensor, with the model untouched)."""

import json
import tempfile
import unittest
from pathlib import Path

import torch
import torch.nn as nn
from expecttest import TestCase
from safetensors.torch import save_file
from checkpoint_files import edit_entry, edit_weights, read_checkpoint, write_checkpoint
from testbed import PYLLAMA

import torchao
from torchao.io.checkpoint import WEIGHTS_NAME, CheckpointError
from torchao.io.flat_state_dict import (
    INNER_SUFFIX,
    flatten_tensor_state_dict,
    is_metadata_torchao,
    unflatten_tensor_state_dict,
)
from torchao.qtensor import LAYOUTS, MappingType, ZeroPointDomain
from torchao.qtensor.laq import to_laq
from torchao.quant_api.registry import Q4_0Config
from torchao.dtypes import AffineQuantizedTensor
from torchao.quant_api.configs import PerTensor
from torchao.quantization import (
    float8_dynamic_activation_float8_weight,
    float8_weight_only,
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
    intx_weight_only,
    quantize_,
)

CONFIGS = {
    "int8wo": int8_weight_only,
    "int4wo": lambda: int4_weight_only(group_size=32),
    "int8dq": int8_dynamic_activation_int8_weight,
    "8da4w": lambda: int8_dynamic_activation_int4_weight(32),
    "w3": lambda: intx_weight_only(3, 32),
    "w6-per-channel-sym": lambda: intx_weight_only(6, None, sym=True),
    "float8wo": float8_weight_only,
    "float8dq-per-tensor": lambda: float8_dynamic_activation_float8_weight(granularity=PerTensor()),
}


class TwoLayers(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.l1 = nn.Linear(128, 64)
        self.norm = nn.LayerNorm(64)
        self.l2 = nn.Linear(64, 32, bias=False)

    def forward(self, x):
        return self.l2(self.norm(torch.relu(self.l1(x))))


#: the layouts torchao ships (tests register others)
PACKAGE_LAYOUTS = {name: cls for name, cls in LAYOUTS.items() if cls.__module__.startswith("torchao.")}


class TestFlatStateDict(TestCase):
    """flatten_tensor_state_dict / unflatten_tensor_state_dict directly, for every layout."""

    def test_every_layout_has_stored_names(self):
        for name, layout in PACKAGE_LAYOUTS.items():
            suffixes = [INNER_SUFFIX.get(n) for n in layout.tensor_names]
            self.assertNotIn(None, suffixes, msg=f"{name}: {layout.tensor_names}")
            self.assertEqual(len(set(suffixes)), len(suffixes), msg=name)

    def test_every_layout_round_trips_exactly(self):
        torch.manual_seed(0)
        w = torch.randn(48, 64, dtype=torch.bfloat16)
        weights = {
            "plain": int8_weight_only()(w),
            "int4_cpu": int4_weight_only(group_size=32)(w),
            "int4_packed": int4_weight_only(group_size=32, layout="int4_packed")(w),
            "bitpacked": AffineQuantizedTensor.from_float(w, MappingType.ASYMMETRIC, (1, 16), torch.uint3,
                                                          zero_point_domain=ZeroPointDomain.INT, layout="bitpacked"),
            "q4_0": Q4_0Config()(w),
        }
        weights["transposed"] = weights["plain"].t()
        self.assertEqual({w.spec.layout for w in weights.values()}, set(PACKAGE_LAYOUTS))
        state = {f"m.{k}.weight": v for k, v in weights.items()}
        state["m.norm.weight"] = torch.ones(3)
        tensors, metadata = flatten_tensor_state_dict(state)
        self.assertTrue(all(type(t) is torch.Tensor for t in tensors.values()))
        self.assertTrue(is_metadata_torchao(metadata))
        self.assertEqual(json.loads(metadata["tensor_names"]), list(state))
        rebuilt, leftover = unflatten_tensor_state_dict(tensors, metadata)
        self.assertEqual(leftover, {})
        self.assertEqual(set(rebuilt), set(state))
        for name, value in state.items():
            if isinstance(value, AffineQuantizedTensor):
                self.assertEqual(rebuilt[name].shape, value.shape, msg=name)
                self.assertTrue(torch.equal(rebuilt[name].dequantize(), value.dequantize()), msg=name)
        self.assertEqual(rebuilt["m.int4_packed.weight"].spec.layout, "int4_cpu")  # the CPU kernel's layout

    def test_other_prefix_and_leftovers(self):
        """A checkpoint of XForCausalLM read under XModel's names (and back); unknown tensors are returned."""
        w = int8_weight_only()(torch.randn(8, 16))
        tensors, metadata = flatten_tensor_state_dict({"model.layers.0.proj.weight": w})
        shorter = {k.removeprefix("model."): t for k, t in tensors.items()}
        rebuilt, leftover = unflatten_tensor_state_dict({**shorter, "extra": torch.zeros(1)}, metadata)
        self.assertEqual(list(rebuilt), ["layers.0.proj.weight"])
        self.assertEqual(list(leftover), ["extra"])
        self.assertTrue(torch.equal(rebuilt["layers.0.proj.weight"].dequantize(), w.dequantize()))

    def test_not_torchao_metadata(self):
        self.assertFalse(is_metadata_torchao({"format": "pt"}))
        self.assertFalse(is_metadata_torchao(None))
        with self.assertRaisesRegex(CheckpointError, "not written by flatten_tensor_state_dict"):
            unflatten_tensor_state_dict({}, {"format": "pt"})

    def test_unstorable_values_are_named(self):
        laq = to_laq(int8_weight_only()(torch.randn(4, 8)), lambda x: x)
        with self.assertRaisesRegex(TypeError, "lin.weight: a LinearActivationQuantizedTensor cannot be stored"):
            flatten_tensor_state_dict({"lin.weight": laq})


def snapshot(model):
    return {k: (v.dequantize() if isinstance(v, AffineQuantizedTensor) else v.clone()) for k, v in model.state_dict().items()}


def assert_unchanged(test, model, before):
    for k, v in model.state_dict().items():
        v = v.dequantize() if isinstance(v, AffineQuantizedTensor) else v
        test.assertTrue(torch.equal(v, before[k]), msg=k)


class TestRoundTrip(TestCase):
    def test_every_config_into_a_float_model(self):
        x = torch.randn(5, 128)
        for name, make in CONFIGS.items():
            model = TwoLayers()
            quantize_(model, make())
            with tempfile.TemporaryDirectory() as tmp:
                torchao.save_quantized(model, tmp)
                fresh = torchao.load_quantized(TwoLayers(seed=1), tmp)
            self.assertIsInstance(fresh.l1.weight, AffineQuantizedTensor)
            self.assertEqual(fresh.l1.weight.spec.layout, model.l1.weight.spec.layout, msg=name)
            self.assertTrue(torch.equal(fresh(x), model(x)), msg=name)

    def test_cpu_layout_is_saved_portably(self):
        model = TwoLayers()
        quantize_(model, int4_weight_only(group_size=32))
        self.assertEqual(model.l1.weight.spec.layout, "int4_cpu")
        with tempfile.TemporaryDirectory() as tmp:
            torchao.save_quantized(model, tmp)
            tensors, meta = read_checkpoint(Path(tmp))
        self.assertEqual(json.loads(meta["l1.weight"])["_data"]["layout"], "int4_packed")
        self.assertEqual(json.loads(meta["norm.weight"]), {"_type": "Tensor"})
        # nibble-packed (64, 128) -> (64, 64) bytes, one scale and zero point per group of 32
        self.assertEqual({k: tuple(v.shape) for k, v in tensors.items() if k.startswith("l1.")},
                         {"l1._weight_qdata": (64, 64), "l1._weight_scale": (64, 4), "l1._weight_zero_point": (64, 4),
                          "l1.bias": (64,)})

    def test_tied_weights_stay_tied(self):
        model = TwoLayers()
        model.l3 = nn.Linear(128, 64)
        model.l3.weight = model.l1.weight
        quantize_(model, int8_weight_only())
        with tempfile.TemporaryDirectory() as tmp:
            torchao.save_quantized(model, tmp)
            target = TwoLayers()
            target.l3 = nn.Linear(128, 64)
            target.l3.weight = target.l1.weight
            torchao.load_quantized(target, tmp)
        self.assertIs(target.l1.weight, target.l3.weight)
        self.assertIsInstance(target.l3.weight, AffineQuantizedTensor)

    def test_transformers_directory_from_config(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(PYLLAMA, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(PYLLAMA)
        float_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        quantize_(model, int4_weight_only(group_size=64))
        ids = torch.randint(0, 4096, (1, 16))
        with tempfile.TemporaryDirectory() as tmp:
            torchao.save_quantized(model, tmp, tokenizer=tokenizer)
            for name in ("config.json", "generation_config.json", "tokenizer.json", WEIGHTS_NAME):
                self.assertTrue((Path(tmp) / name).exists(), msg=name)
                self.assertEqual((Path(tmp) / name).stat().st_mode & 0o777, (Path(tmp) / "config.json").stat().st_mode & 0o777,
                                 msg=f"{name} is not readable like the other files")
            size = (Path(tmp) / WEIGHTS_NAME).stat().st_size
            loaded = torchao.load_quantized(tmp)
            with torch.no_grad():
                self.assertTrue(torch.equal(loaded(ids).logits, model(ids).logits))
        # fp32 model: 21 MB; embeddings (4 MB) stay float, the Linear weights shrink ~7x
        self.assertLess(size, 0.35 * float_bytes)


class TestCorruptFiles(TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        model = TwoLayers()
        quantize_(model, int4_weight_only(group_size=32))
        torchao.save_quantized(model, self.dir)
        self.target = TwoLayers(seed=1)
        quantize_(self.target, int8_weight_only())
        self.before = snapshot(self.target)

    def tearDown(self):
        self.tmp.cleanup()

    def expect(self, regex):
        with self.assertRaisesRegex(CheckpointError, regex):
            torchao.load_quantized(self.target, self.dir)
        assert_unchanged(self, self.target, self.before)

    def edit_entry(self, name, fn, resign=False):
        edit_entry(self.dir, name, fn, resign)

    def edit_weights(self, fn, resign=False):
        edit_weights(self.dir, fn, resign)

    def test_truncated_weights(self):
        path = self.dir / WEIGHTS_NAME
        path.write_bytes(path.read_bytes()[:200])
        self.expect("model.safetensors is corrupt or truncated")

    def test_missing_file(self):
        (self.dir / WEIGHTS_NAME).unlink()
        self.expect("model.safetensors is missing")

    def test_not_a_torchao_checkpoint(self):
        tensors, _ = read_checkpoint(self.dir)
        save_file(tensors, str(self.dir / WEIGHTS_NAME))
        self.expect("the weights have no torchao metadata")

    def test_entry_not_json(self):
        tensors, meta = read_checkpoint(self.dir)
        write_checkpoint(self.dir, tensors, {**meta, "l1.weight": "{oops"})
        self.expect(r"l1.weight: metadata entry 'l1.weight' is missing or not JSON")

    def test_unknown_tensor_type(self):
        tensors, meta = read_checkpoint(self.dir)
        write_checkpoint(self.dir, tensors, {**meta, "l1.weight": json.dumps({"_type": "os.system"})})
        self.expect(r"l1.weight: unknown tensor type 'os.system' .*nothing is imported from a file")

    def test_edited_entry(self):
        self.edit_entry("l1.weight", lambda d: d.update(quant_max=7))
        self.expect(r"l1.weight: its metadata entry differs from what was saved")

    def test_unknown_layout(self):
        self.edit_entry("l1.weight", lambda d: d.update(layout="marlin"), resign=True)
        self.expect(r"l1.weight: unknown layout 'marlin'")

    def test_wrong_shape_for_the_model(self):
        small = TwoLayers()
        small.l1 = nn.Linear(128, 32)
        self.target, self.before = small, snapshot(small)
        self.expect(r"l1.weight: checkpoint shape \(64, 128\) does not match the model's \(32, 128\)")

    def test_metadata_and_weights_disagree(self):
        self.edit_entry("l2.weight", lambda d: d.update(shape=[32, 32]), resign=True)
        self.expect(r"l2.weight: the packed data unpacks to \(32, 64\), metadata says \(32, 32\)")

    def test_packed_data_of_the_wrong_size(self):
        self.edit_weights(lambda t: t.update({"l2._weight_qdata": t["l2._weight_qdata"][:, :16].contiguous()}),
                          resign=True)
        self.expect(r"l2.weight: the packed data unpacks to \(32, 32\), metadata says \(32, 64\)")

    def test_edited_tensor(self):
        self.edit_weights(lambda t: t.update({"l2._weight_qdata": t["l2._weight_qdata"] ^ 1}))
        self.expect(r"l2._weight_qdata: its bytes, dtype or shape differ from what was saved")

    def test_added_tensor(self):
        self.edit_weights(lambda t: t.update({"l9.weight": torch.zeros(3)}))
        self.expect(r"stored tensors that no metadata entry describes: \['l9.weight'\]")

    def test_missing_inner_tensor(self):
        self.edit_weights(lambda t: t.pop("l1._weight_scale"))
        self.expect(r"l1.weight: the checkpoint lacks \['l1._weight_scale'\]")

    def test_missing_float_tensor(self):
        self.edit_weights(lambda t: t.pop("norm.bias"))
        self.expect(r"the checkpoint lacks tensors the model has: \['norm.bias'\]")

    def test_malformed_spec(self):
        self.edit_entry("l1.weight", lambda d: d.pop("quant_max"), resign=True)
        self.expect(r"l1.weight: malformed quantization metadata \(KeyError")

    def test_values_outside_the_range(self):
        self.edit_entry("l1.weight", lambda d: d.update(quant_max=7), resign=True)
        self.expect(r"l1.weight: stored values span \[0, 15\], outside the metadata's range \[0, 7\]")


if __name__ == "__main__":
    unittest.main()
