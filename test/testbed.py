"""Test models: the shared test bed ($TORCHAO_TESTBED or ../shared/testbed next to the repository) and a
tiny random transformers Llama built from a config."""

import os
import unittest
from pathlib import Path

TESTBED = Path(os.environ.get("TORCHAO_TESTBED", Path(__file__).resolve().parents[2] / "shared" / "testbed"))
PYLLAMA = TESTBED / "pyllama-5m"

requires_pyllama = unittest.skipUnless((PYLLAMA / "model.safetensors").exists(), f"test-bed model not found at {PYLLAMA}")


def tiny_llama(vocab_size: int = 128, hidden_size: int = 64, intermediate_size: int = 128):
    """A seeded random 2-layer LlamaForCausalLM (4 heads, 2 KV heads, 64 positions), in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()
