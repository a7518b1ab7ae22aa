"""llama.cpp on our GGUF against torchao on the same weights: perplexity and greedy decode speed.

    pip install -e '.[llama-cpp]'      # builds llama.cpp from source (about 10 minutes on 2 cores)
    python benchmarks/llama_cpp_vs_torchao.py [--model DIR] [--threads 2] [--tokens 64] [--windows 8]

The model's block Linear layers are quantized to GGUF's Q4_0 (Q4_0Config: blocks of 32, float16 scales),
saved with ``save_quantized(format="gguf")`` and loaded by llama-cpp-python. Both score the same token ids
(our tokenizer's) of the test bed's held-out text in windows of --seqlen tokens; decoding is greedy from the
same prompt, one token per step, --threads CPU threads for both (torch.set_num_threads).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

import torchao
from torchao.quantization import Q4_0Config, quantize_
from torchao.testbed import heldout_text, model_dir


def windows(ids: torch.Tensor, seqlen: int, count: int):
    return [ids[i:i + seqlen] for i in range(0, len(ids) - seqlen + 1, seqlen)][:count]


def nll_torch(model, window: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(window[None]).logits[0, :-1].float()
    return F.cross_entropy(logits, window[1:], reduction="sum").item()


def nll_llama_cpp(llm, window: torch.Tensor) -> float:
    llm.reset()
    llm.eval(window.tolist())
    logits = torch.tensor(llm.scores[: len(window) - 1], dtype=torch.float32)
    return F.cross_entropy(logits, window[1:], reduction="sum").item()


def decode_torch(model, prompt: torch.Tensor, tokens: int) -> float:
    """tokens/s of greedy decoding after the prompt (prefill not counted)."""
    with torch.no_grad():
        model.generate(prompt[None], max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm up
        start = time.perf_counter()
        model.generate(prompt[None], max_new_tokens=1, min_new_tokens=1, do_sample=False)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(prompt[None], max_new_tokens=tokens + 1, min_new_tokens=tokens + 1, do_sample=False)
        return tokens / (time.perf_counter() - start - prefill)


def decode_llama_cpp(llm, prompt: torch.Tensor, tokens: int) -> float:
    llm.reset()
    llm.eval(prompt.tolist())
    start = time.perf_counter()
    for _ in range(tokens):
        llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
    return tokens / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(model_dir()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--windows", type=int, default=8)
    args = parser.parse_args(argv)
    from llama_cpp import Llama

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    quantize_(model, Q4_0Config(), filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != "lm_head")
    ids = tokenizer(heldout_text(), return_tensors="pt").input_ids[0]
    chunks = windows(ids, args.seqlen, args.windows)
    prompt = ids[:32]
    with tempfile.TemporaryDirectory() as tmp:
        path = torchao.save_quantized(model, tmp, tokenizer=tokenizer, format="gguf") / "model.gguf"
        size = path.stat().st_size / 2**20
        llm = Llama(str(path), logits_all=True, n_ctx=max(args.seqlen, len(prompt) + args.tokens + 8),
                    n_threads=args.threads, n_batch=args.seqlen, verbose=False)
        try:
            scored = sum(len(w) - 1 for w in chunks)
            rows = [
                ("torchao (Q4_0 layout)", math.exp(sum(nll_torch(model, w) for w in chunks) / scored),
                 decode_torch(model, prompt, args.tokens)),
                ("llama.cpp (our model.gguf)", math.exp(sum(nll_llama_cpp(llm, w) for w in chunks) / scored),
                 decode_llama_cpp(llm, prompt, args.tokens)),
            ]
        finally:
            llm.close()
    print(f"{Path(args.model).name}: Q4_0 block Linear layers, model.gguf {size:.1f} MB; perplexity over "
          f"{len(chunks)} x {args.seqlen} held-out tokens; greedy decode of {args.tokens} tokens, {args.threads} threads\n")
    print(f"| {'engine':28s} | perplexity | decode tok/s | vs llama.cpp |")
    print(f"|{'-' * 30}|-----------:|-------------:|-------------:|")
    for name, ppl, speed in rows:
        print(f"| {name:28s} | {ppl:10.4f} | {speed:12.1f} | {speed / rows[1][2]:11.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
