"""torchao._eval: the built-in perplexity against a float64 reference, InputRecorder windows feeding GPTQ,
and TransformerEvalWrapper's errors without lm_eval."""

import importlib.util
import math
import unittest

import torch
from expecttest import TestCase
from testbed import tiny_llama

import torchao
from torchao._eval import InputRecorder, TransformerEvalWrapper, perplexity
from torchao.dtypes import AffineQuantizedTensor
from torchao.quantization import gptq


class ByteTokenizer:
    """encode(text) -> the UTF-8 bytes as ids (vocab 256)."""

    def encode(self, text):
        return list(text.encode())


class TestPerplexity(TestCase):
    def test_matches_a_float64_reference(self):
        model = tiny_llama(vocab_size=256)
        ids = torch.randint(0, 256, (3 * 32 + 5,))  # 3 windows of 32, 5 tokens left over
        nll, count = 0.0, 0
        with torch.no_grad():
            for window in ids[:96].reshape(3, 32):
                logp = torch.log_softmax(model(window[None]).logits[0, :-1].double(), dim=-1)
                nll -= logp.gather(1, window[1:, None]).sum().item()
                count += 31
        expected = math.exp(nll / count)
        self.assertAlmostEqual(perplexity(model, ids, seqlen=32, batch_size=2), expected, delta=1e-4 * expected)
        one = perplexity(model, ids, seqlen=32, max_windows=1)
        self.assertNotAlmostEqual(one, expected, places=6)

    def test_too_few_tokens(self):
        with self.assertRaisesRegex(ValueError, "10 tokens are fewer than one window of 32"):
            perplexity(tiny_llama(vocab_size=256), torch.zeros(10, dtype=torch.long), seqlen=32)


class TestInputRecorder(TestCase):
    def test_windows_padding_limit_and_vocab(self):
        text = "abcdefghij" * 5  # 50 tokens
        windows = InputRecorder(ByteTokenizer(), 16).record_texts([text]).get_inputs()
        self.assertEqual([w[0].shape for w in windows], [torch.Size([1, 16])] * 3)
        self.assertEqual(windows[1][0][0].tolist(), list(text.encode()[16:32]))
        padded = InputRecorder(ByteTokenizer(), 16, pad_calibration_inputs=True).record_texts([text]).get_inputs()
        self.assertEqual(len(padded), 4)
        self.assertEqual(padded[3][0][0].tolist(), list(text.encode()[48:]) + [0] * 14)
        self.assertEqual(len(InputRecorder(ByteTokenizer(), 16).record_texts([text], limit=2).get_inputs()), 2)
        with self.assertRaisesRegex(ValueError, "token id 106 is outside the vocabulary of 100"):
            InputRecorder(ByteTokenizer(), 16, vocab_size=100).record_texts([text])
        with self.assertRaisesRegex(ValueError, "no calibration inputs were recorded"):
            InputRecorder(ByteTokenizer(), 64).record_texts([text]).get_inputs()

    def test_recorded_inputs_calibrate_gptq(self):
        model = tiny_llama(vocab_size=256)
        text = "the quick brown fox jumps over the lazy dog. " * 20
        inputs = InputRecorder(ByteTokenizer(), 32).record_texts([text]).get_inputs()
        torchao.quantize_(model, gptq(inputs, bits=4, group_size=32, progress=False),
                          filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != "lm_head")
        self.assertIsInstance(model.model.layers[1].mlp.down_proj.weight, AffineQuantizedTensor)

    def test_input_prep_func(self):
        recorder = InputRecorder(ByteTokenizer(), 8, input_prep_func=lambda ids: (ids, torch.arange(8)))
        (ids, pos), = recorder.record_texts(["12345678"]).get_inputs()
        self.assertEqual(pos.tolist(), list(range(8)))


class TestTransformerEvalWrapper(TestCase):
    def test_perplexity_without_lm_eval(self):
        model = tiny_llama(vocab_size=256)
        text = "hello world, " * 30
        wrapper = TransformerEvalWrapper(model, ByteTokenizer(), max_seq_length=64)
        ids = torch.tensor(ByteTokenizer().encode(text))
        self.assertEqual(wrapper.perplexity(text, seqlen=64), perplexity(model, ids, 64))

    @unittest.skipIf(importlib.util.find_spec("lm_eval") is not None, "lm_eval is installed")
    def test_run_eval_says_what_is_missing(self):
        wrapper = TransformerEvalWrapper(tiny_llama(vocab_size=256), ByteTokenizer())
        with self.assertRaisesRegex(ImportError, r"needs the lm_eval package \(pip install lm_eval\)"):
            wrapper.run_eval(["wikitext"], limit=1)


if __name__ == "__main__":
    unittest.main()
