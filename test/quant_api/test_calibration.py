"""Block-input capture for GPTQ / AutoRound: what a model passes to its blocks is made replayable (no KV
cache object under any name, no autograd graph), so transformers' changes to that plumbing cannot break
calibration; and the calibrated methods run on the test-bed Llama as transformers loads it."""

import unittest
import warnings

import torch
import torch.nn as nn
from expecttest import TestCase
from testbed import CALIBRATION_TEXT, PYLLAMA, tiny_llama

from torchao.dtypes import AffineQuantizedTensor
from torchao.quant_api.calibration import capture_block_inputs, is_kv_cache, replayable
from torchao.quantization import autoround, gptq, quantize_


class GrowingCache:
    """A stand-in for a KV cache: every update appends, as transformers' DynamicCache does."""

    def __init__(self):
        self.keys = []

    def update(self, key, *rest, **kwargs):
        self.keys.append(key)
        return torch.cat(self.keys, dim=1)

    def get_seq_length(self):
        return sum(k.shape[1] for k in self.keys)


class CachingBlock(nn.Module):
    """A block that reads and extends a cache passed under a name no list of known names contains."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, hidden, rotary=None, kv_state=None):
        keys = kv_state.update(hidden) if kv_state is not None else hidden
        return self.proj(hidden) + keys[:, -hidden.shape[1]:] * rotary


class CachingModel(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.rotary_weight = nn.Parameter(torch.ones(dim))
        self.blocks = nn.ModuleList([CachingBlock(dim) for _ in range(2)])

    def forward(self, x):
        cache = GrowingCache()
        rotary = self.rotary_weight * 2  # computed with grad enabled: carries a graph
        for block in self.blocks:
            x = block(x, rotary=rotary, kv_state=cache)
        return x


class TestReplayable(TestCase):
    def test_cache_objects_are_dropped_under_any_name(self):
        cache = GrowingCache()
        cleaned = replayable({"kv_state": cache, "past_key_values": object(), "cache": cache, "use_cache": True,
                              "mask": torch.ones(2)})
        self.assertIsNone(cleaned["kv_state"])
        self.assertIsNone(cleaned["past_key_values"])
        self.assertIsNone(cleaned["cache"])
        self.assertFalse(cleaned["use_cache"])
        self.assertEqual(cleaned["mask"].tolist(), [1.0, 1.0])
        self.assertTrue(is_kv_cache(cache))
        self.assertFalse(is_kv_cache({}))

    def test_tensors_with_a_graph_are_detached(self):
        w = torch.ones(3, requires_grad=True)
        cleaned = replayable({"position_embeddings": (w * 2, w * 3)})
        self.assertTrue(all(not t.requires_grad and t.grad_fn is None for t in cleaned["position_embeddings"]))

    def test_capture_from_a_model_with_a_growing_cache(self):
        model = CachingModel()
        with torch.enable_grad():
            captured = capture_block_inputs(model, model.blocks[0], [(torch.randn(1, 4, 16),)] * 3, torch.device("cpu"))
        self.assertEqual(len(captured), 3)
        for inp in captured:
            self.assertIsNone(inp.kwargs["kv_state"])
            self.assertFalse(inp.kwargs["rotary"].requires_grad)

    def test_autoround_tunes_through_a_model_with_a_growing_cache(self):
        model = CachingModel()
        data = [torch.randn(1, 4, 16) for _ in range(4)]
        quantize_(model, autoround(data, bits=4, group_size=16, iters=3, bs=2, progress=False))
        self.assertIsInstance(model.blocks[1].proj.weight, AffineQuantizedTensor)


def load_testbed():
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(PYLLAMA, dtype=torch.float32).eval()


class TestTransformersLlama(TestCase):
    """transformers passes its blocks a cache object (``past_key_values`` before 5.24, ``cache`` since)."""

    def test_tiny_llama_blocks_get_no_cache(self):
        model = tiny_llama()
        captured = capture_block_inputs(model, model.model.layers[0], [{"input_ids": torch.randint(0, 128, (1, 8))}],
                                        torch.device("cpu"))
        self.assertFalse(any(is_kv_cache(v) for v in captured[0].kwargs.values()))

    def test_every_documented_calibration_form(self):
        """texts + tokenizer, a list of id tensors, one (B, S) id tensor, a DataLoader of dicts."""
        from torch.utils.data import DataLoader
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(PYLLAMA)
        ids = tokenizer(CALIBRATION_TEXT[:20000], return_tensors="pt").input_ids[:, :4 * 64].reshape(4, 64)
        forms = {
            "texts": dict(calibration=[CALIBRATION_TEXT[:20000]], tokenizer=tokenizer, seqlen=64, n_samples=4),
            "list of id tensors": dict(calibration=list(ids.unbind(0))),
            "one id tensor": dict(calibration=ids),
            "dataloader of dicts": dict(calibration=DataLoader([{"input_ids": row} for row in ids], batch_size=2)),
        }
        blocks = lambda m, fqn: isinstance(m, nn.Linear) and ".layers." in fqn  # noqa: E731
        for form, kwargs in forms.items():
            for make in (lambda **kw: gptq(bits=4, group_size=64, progress=False, **kw),
                         lambda **kw: autoround(bits=4, group_size=64, iters=2, bs=2, progress=False, **kw)):
                model = load_testbed()
                quantize_(model, make(**kwargs), filter_fn=blocks)
                quantized = [m for n, m in model.named_modules() if blocks(m, n)]
                self.assertEqual(len(quantized), 28)
                self.assertTrue(all(isinstance(m.weight, AffineQuantizedTensor) for m in quantized), msg=form)
                with torch.no_grad():
                    self.assertTrue(bool(torch.isfinite(model(ids[:1]).logits).all()), msg=form)

    def test_autoround_and_gptq_on_the_testbed_with_token_ids(self):
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(PYLLAMA)(CALIBRATION_TEXT[:20000], return_tensors="pt").input_ids
        calib = [ids[:, i * 64:(i + 1) * 64] for i in range(4)]
        blocks = lambda m, fqn: isinstance(m, nn.Linear) and ".layers." in fqn  # noqa: E731
        for config in (autoround(calib, bits=4, group_size=64, iters=3, bs=2, progress=False),
                       gptq(calib, bits=4, group_size=64, progress=False)):
            model = load_testbed()
            with torch.no_grad():
                ref = model(ids[:, :64]).logits
            quantize_(model, config, filter_fn=blocks)
            self.assertIsInstance(model.model.layers[3].mlp.down_proj.weight, AffineQuantizedTensor)
            with torch.no_grad():
                out = model(ids[:, :64]).logits
            sqnr = 20 * torch.log10(ref.norm() / (ref - out).norm())
            self.assertGreater(sqnr.item(), 15, msg=type(config).__name__)


if __name__ == "__main__":
    unittest.main()
