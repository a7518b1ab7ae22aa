"""autoquant: shape recording, selection with a fake timer, min_sqnr, AUTOQUANT_CACHE via pickle and
JSON with no re-benchmarking, compiled and plain models, manual finalization."""

import io
import json
import pickle
import tempfile
import unittest
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from expecttest import TestCase

import torchao
import torchao.quantization
from torchao.dtypes import AffineQuantizedTensor
from torchao.quant_api.autoquant import AutoQuantRecordingWeight


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(64, 128)
        self.b = nn.Linear(128, 32, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class FakeTimer:
    """Deterministic 'times': a fixed cost per candidate (recognized by the weight type in the module)."""

    def __init__(self, costs):
        self.costs, self.calls = costs, 0

    def __call__(self, module, x):
        self.calls += 1
        weight = getattr(getattr(module, "_orig_mod", module), "weight", None)
        if not isinstance(weight, AffineQuantizedTensor):
            return self.costs["float"]
        spec = weight.spec
        if spec.act_quant:
            return self.costs["int8dq"]
        if spec.bits == 8:
            return self.costs["int8wo"]
        return self.costs[f"int4wo-{spec.group_size}"]


COSTS = {"float": 5.0, "int8wo": 2.0, "int8dq": 3.0, "int4wo-64": 1.5, "int4wo-128": 1.0}


class TestAutoquant(TestCase):
    def setUp(self):
        torchao.quantization.AUTOQUANT_CACHE.clear()

    def test_recording_logs_shapes_and_dtypes(self):
        w = AutoQuantRecordingWeight(torch.randn(8, 16))
        for shape in [(2, 16), (2, 16), (3, 5, 16)]:
            torch.nn.functional.linear(torch.randn(shape), w)
        self.assertEqual(dict(w.shape_counts), {((2, 16), torch.float32): 2, ((3, 5, 16), torch.float32): 1})

    def test_fake_timer_picks_the_minimum_and_swaps(self):
        model = Toy()
        timer = FakeTimer(COSTS)
        torchao.autoquant(model, torch.randn(4, 64), timer=timer, quiet=True)
        for layer in (model.a, model.b):
            self.assertIsInstance(layer.weight, AffineQuantizedTensor)
            self.assertEqual(layer.weight.spec.group_size, 128 if layer is model.b else 64)  # a: K=64, no g128
        self.assertEqual([c.chosen for c in model.autoquant_plan.choices], ["int4wo-64", "int4wo-128"])
        self.assertEqual(timer.calls, 4 + 5)  # a: float, int8wo, int8dq, int4wo-64; b: all five

    def test_shape_frequency_weights_the_choice(self):
        class ShapeTimer(FakeTimer):
            def __call__(self, module, x):  # int8dq is fast on big batches, slow on one row
                cost = super().__call__(module, x)
                if cost == COSTS["int8dq"]:
                    return 0.1 if x.shape[0] > 1 else 1.5
                return cost

        for batches, expected in [([8, 8, 8, 1], "int8dq"), ([1, 1, 1, 8], "int4wo-128")]:
            torchao.quantization.AUTOQUANT_CACHE.clear()
            model = Toy()
            torchao.autoquant(model, manual=True, quiet=True, timer=ShapeTimer(COSTS))
            for b in batches:
                model(torch.randn(b, 64))
            model.finalize_autoquant()
            self.assertEqual(model.autoquant_plan.choices[1].chosen, expected, msg=str(batches))

    def test_min_sqnr_excludes_a_bad_candidate(self):
        model = Toy()
        torchao.autoquant(model, torch.randn(4, 64), timer=FakeTimer(COSTS), min_sqnr=30, quiet=True)
        for choice in model.autoquant_plan.choices:
            self.assertLess(choice.sqnr["int4wo-128" if "int4wo-128" in choice.sqnr else "int4wo-64"], 30)
            self.assertEqual(choice.chosen, "int8wo")  # fastest of those above 30 dB

    def test_cache_round_trip_pickle_and_json_means_no_benchmark(self):
        model = Toy()
        torchao.autoquant(model, torch.randn(4, 64), timer=FakeTimer(COSTS), quiet=True)
        first = [c.chosen for c in model.autoquant_plan.choices]
        # exactly as in the seed README
        buf = io.BytesIO()
        pickle.dump(torchao.quantization.AUTOQUANT_CACHE, buf)
        torchao.quantization.AUTOQUANT_CACHE.clear()
        buf.seek(0)
        torchao.quantization.AUTOQUANT_CACHE.update(pickle.load(buf))
        timer = FakeTimer({k: 100.0 for k in COSTS})
        again = Toy()
        torchao.autoquant(again, torch.randn(4, 64), timer=timer, quiet=True)
        self.assertEqual(timer.calls, 0)
        self.assertEqual([c.chosen for c in again.autoquant_plan.choices], first)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cache.json"
            torchao.quantization.save_autoquant_cache(path)
            torchao.quantization.AUTOQUANT_CACHE.clear()
            self.assertEqual(torchao.quantization.load_autoquant_cache(path), 9)
            third = Toy()
            torchao.autoquant(third, torch.randn(4, 64), timer=timer, quiet=True)
            self.assertEqual(timer.calls, 0)
            self.assertEqual([c.chosen for c in third.autoquant_plan.choices], first)
            data = json.loads(path.read_text())
            for entry in data["entries"]:
                entry[1][1] = "some other GPU"
            path.write_text(json.dumps(data))
            torchao.quantization.AUTOQUANT_CACHE.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.assertEqual(torchao.quantization.load_autoquant_cache(path), 0)
            self.assertIn("ignoring 9 of 9 timings", str(caught[0].message))
            self.assertIn("measured elsewhere (some other GPU (torch", str(caught[0].message))
            self.assertEqual(len(torchao.quantization.AUTOQUANT_CACHE), 0)
            path.write_text("{not json")
            with self.assertRaisesRegex(ValueError, "cannot read autoquant cache"):
                torchao.quantization.load_autoquant_cache(path)

    def test_pickled_timings_from_elsewhere_are_ignored_with_one_warning(self):
        """The seed's pickle path carries each entry's device and versions, so a foreign cache cannot steer
        the choice here (timings of another GPU, or bare floats of an older cache)."""
        cache = torchao.quantization.AUTOQUANT_CACHE
        cache.clear()
        torchao.autoquant(Toy(), torch.randn(4, 64), timer=FakeTimer(COSTS), quiet=True)
        foreign = {k: v._replace(device="NVIDIA H100 80GB HBM3") for k, v in cache.items()}
        foreign[("int8wo", (4, 64), (999, 64), None, "float32")] = 0.001  # an old bare float
        buf = io.BytesIO()
        pickle.dump(foreign, buf)
        buf.seek(0)
        cache.clear()
        cache.update(pickle.load(buf))
        timer = FakeTimer(COSTS)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torchao.autoquant(Toy(), torch.randn(4, 64), timer=timer, quiet=True)
        messages = [str(w.message) for w in caught if "AUTOQUANT_CACHE" in str(w.message)]
        self.assertEqual(len(messages), 1, msg=messages)
        self.assertIn("ignores 10 AUTOQUANT_CACHE timing(s) measured elsewhere", messages[0])
        self.assertIn("9 from NVIDIA H100 80GB HBM3", messages[0])
        self.assertGreater(timer.calls, 0)  # measured again here
        cache.clear()

    def test_compiled_model_first_call_then_fullgraph(self):
        model = Toy().eval()
        x = torch.randn(4, 64)
        ref = model(x)
        torch._dynamo.reset()
        compiled = torchao.autoquant(torch.compile(model, fullgraph=True), quiet=True)
        with torch.no_grad():
            out = compiled(x)  # records, benchmarks (really), swaps, runs compiled
            out2 = compiled(x)
        self.assertEqual(len(compiled.autoquant_plan.choices), 2)
        self.assertGreater((20 * torch.log10(ref.norm() / (ref - out2).norm())).item(), 20)
        self.assertTrue(torch.allclose(out, out2, atol=1e-3, rtol=1e-3))
        self.assertNotEqual(compiled.forward.__name__, "autoquant_forward")  # the compiled forward is back

    def test_summary_table(self):
        model = Toy()
        torchao.autoquant(model, torch.randn(4, 64), timer=FakeTimer(COSTS), min_sqnr=10, quiet=True)
        from torchao.quant_api.autoquant import summary_table

        table = summary_table(model.autoquant_plan.choices).splitlines()
        self.assertEqual(table[0], "| layer | shapes | chosen | float ms | int8wo ms | int8dq ms | int4wo-64 ms | int4wo-128 ms |")
        self.assertTrue(table[2].startswith("| a | (4, 64)x1 | int4wo-64 | 5.000 | 2.000 ("))

    def test_unknown_candidate(self):
        with self.assertRaisesRegex(ValueError, r"unknown autoquant candidates \['int3'\]"):
            torchao.autoquant(Toy(), qtensor_class_list=["int3"])


class TestTinyLlama(TestCase):
    def test_sqnr_against_float(self):
        from transformers import LlamaConfig, LlamaForCausalLM

        torchao.quantization.AUTOQUANT_CACHE.clear()
        config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
        ids = torch.randint(0, 256, (1, 16))
        with torch.no_grad():
            ref = model(ids).logits
        # fixed costs make both int8 candidates beat float, so only min_sqnr decides what is kept
        torchao.autoquant(model, quiet=True, min_sqnr=30, qtensor_class_list=["int8wo", "int8dq"],
                          timer=FakeTimer(COSTS))
        with torch.no_grad():
            out = model(ids).logits
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.assertTrue(all(isinstance(m.weight, AffineQuantizedTensor) for m in linears))
        self.assertGreater((20 * torch.log10(ref.norm() / (ref - out).norm())).item(), 30)


if __name__ == "__main__":
    unittest.main()
