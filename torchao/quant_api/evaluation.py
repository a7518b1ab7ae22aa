"""Evaluation helpers with the seed's names: InputRecorder, TransformerEvalWrapper, and a built-in
perplexity evaluator that needs nothing beyond torch.

``InputRecorder`` turns local texts (or lm_eval tasks, when ``lm_eval`` is installed) into calibration
inputs of ``calibration_seq_length`` tokens; ``get_inputs()`` feeds GPTQ / AutoRound directly.
``TransformerEvalWrapper(...).run_eval(tasks, limit)`` runs lm_eval tasks when lm_eval is installed;
``perplexity(...)`` works everywhere.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn

__all__ = ["InputRecorder", "TransformerEvalWrapper", "perplexity", "logits_of"]


def logits_of(output) -> torch.Tensor:
    """The logits of a model output (a tensor, a tuple, or a transformers ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    return output[0]


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, seqlen: int = 256, max_windows: Optional[int] = None,
               batch_size: int = 8, input_prep_func: Optional[Callable] = None) -> float:
    """exp(mean next-token cross-entropy) over non-overlapping windows of ``seqlen`` tokens of ``ids`` (int64,
    any shape, read flat). ``input_prep_func`` maps a (batch, seqlen) id tensor to the model's argument tuple."""
    prepare = input_prep_func or (lambda batch: (batch,))
    ids = ids.reshape(-1)
    windows = ids.numel() // seqlen
    if windows == 0:
        raise ValueError(f"{ids.numel()} tokens are fewer than one window of {seqlen}")
    if max_windows:
        windows = min(windows, max_windows)
    data = ids[: windows * seqlen].reshape(windows, seqlen)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    total, count = 0.0, 0
    for batch in data.split(batch_size):
        batch = batch.to(device)
        logits = logits_of(model(*prepare(batch)))[:, :-1].float()
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                   reduction="sum").item()
        count += batch[:, 1:].numel()
    return math.exp(total / count)


def _lm_eval():
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ImportError("this needs the lm_eval package (pip install lm_eval); torchao.quant_api.evaluation.perplexity works "
                          "without it") from None
    import lm_eval

    return lm_eval


class InputRecorder:
    """Collect calibration inputs: windows of ``calibration_seq_length`` token ids.

    input_prep_func: maps a (1, seq) id tensor to the model's argument tuple (default: ``(ids,)``);
    pad_calibration_inputs: keep a final short window, padded with token 0; vocab_size: ids are checked
    against it.
    """

    def __init__(self, tokenizer, calibration_seq_length: int, input_prep_func: Optional[Callable] = None,
                 pad_calibration_inputs: bool = False, vocab_size: Optional[int] = None, device="cpu"):
        self.tokenizer, self.seqlen = tokenizer, calibration_seq_length
        self.input_prep_func = input_prep_func or (lambda ids: (ids,))
        self.pad, self.vocab_size, self.device = pad_calibration_inputs, vocab_size, torch.device(device)
        self.inputs: List[tuple] = []

    def _encode(self, text: str) -> List[int]:
        if hasattr(self.tokenizer, "encode"):
            return list(self.tokenizer.encode(text))
        return list(self.tokenizer(text)["input_ids"])

    def record_texts(self, texts: Sequence[str], limit: Optional[int] = None) -> "InputRecorder":
        ids = [t for text in texts for t in self._encode(text)]
        if self.vocab_size is not None and ids and max(ids) >= self.vocab_size:
            raise ValueError(f"token id {max(ids)} is outside the vocabulary of {self.vocab_size}")
        for start in range(0, len(ids), self.seqlen):
            window = ids[start:start + self.seqlen]
            if len(window) < self.seqlen:
                if not self.pad:
                    break
                window = window + [0] * (self.seqlen - len(window))
            self.inputs.append(self.input_prep_func(torch.tensor([window], device=self.device)))
            if limit and len(self.inputs) >= limit:
                break
        return self

    def record_inputs(self, calibration_tasks: Sequence[str], calibration_limit: Optional[int] = None,
                      texts: Optional[Sequence[str]] = None) -> "InputRecorder":
        """Record local ``texts`` if given, else the documents of lm_eval ``calibration_tasks``."""
        if texts is not None:
            return self.record_texts(texts, calibration_limit)
        _lm_eval()
        from lm_eval.tasks import TaskManager, get_task_dict

        documents = []
        for task in get_task_dict(list(calibration_tasks), TaskManager()).values():
            docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
            documents += [task.doc_to_text(d) for d in docs]
        return self.record_texts(documents, calibration_limit)

    def get_inputs(self) -> List[tuple]:
        if not self.inputs:
            raise ValueError("no calibration inputs were recorded (texts too short for one window?)")
        return list(self.inputs)


class TransformerEvalWrapper:
    """Run lm_eval tasks on a (quantized) causal LM: ``TransformerEvalWrapper(model, tokenizer, 2048).run_eval(["wikitext"], 10)``."""

    def __init__(self, model: nn.Module, tokenizer, max_seq_length: int = 2048, input_prep_func=None, device="cpu"):
        self.model, self.tokenizer, self.max_seq_length = model, tokenizer, max_seq_length
        self.input_prep_func, self.device = input_prep_func, torch.device(device)

    def run_eval(self, tasks: Sequence[str], limit: Optional[int] = None) -> dict:
        lm_eval = _lm_eval()
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=self.model, tokenizer=self.tokenizer, max_length=self.max_seq_length, device=str(self.device))
        return lm_eval.simple_evaluate(lm, tasks=list(tasks), limit=limit)

    def perplexity(self, text: str, seqlen: int = 256, max_windows: Optional[int] = None) -> float:
        ids = torch.tensor(self.tokenizer.encode(text) if hasattr(self.tokenizer, "encode") else self.tokenizer(text)["input_ids"])
        return perplexity(self.model, ids, seqlen, max_windows, input_prep_func=self.input_prep_func)
