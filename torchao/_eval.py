"""Seed import path torchao._eval (re-exports of torchao.quant_api.evaluation)."""

from torchao.quant_api.evaluation import InputRecorder, TransformerEvalWrapper, logits_of, perplexity

__all__ = ["InputRecorder", "TransformerEvalWrapper", "perplexity", "logits_of"]
