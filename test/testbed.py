"""Test models: the test bed that ships with the package (torchao.testbed: pyllama-5m, or $TORCHAO_TESTBED)
and a tiny random transformers Llama built from a config."""

from torchao.testbed import calibration_text, heldout_text, model_dir

PYLLAMA = model_dir()
CALIBRATION_TEXT = calibration_text()
HELDOUT_TEXT = heldout_text()


def tiny_llama(vocab_size: int = 128, hidden_size: int = 64, intermediate_size: int = 128):
    """A seeded random 2-layer LlamaForCausalLM (4 heads, 2 KV heads, 64 positions), in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()
