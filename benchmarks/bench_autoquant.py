"""autoquant vs each single config on Llama-shaped models, compiled: decode and prefill tokens/s.

    python benchmarks/bench_autoquant.py [--models testbed large] [--quick]

"testbed" is pyllama-5m (the packaged test bed, torchao.testbed); "large" is a random-weight Llama with hidden 2048, 8 layers,
MLP 5632, 16 heads / 4 KV heads, vocab 32000 (~0.5 B parameters). Decode = one token per forward (batch 1,
no KV cache), prefill = 128 tokens; bf16; every variant torch.compile'd. autoquant's own time (recording,
benchmarking, swapping, compiling) is reported separately; it records one decode and one prefill call.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import torch

import torchao
import torchao.quantization
from torchao.quantization import (
    int4_weight_only,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
)
from torchao.testbed import model_dir
from torchao.utils import benchmark_model

CONFIGS = {
    "float": None,
    "int8wo": int8_weight_only,
    "int8dq": int8_dynamic_activation_int8_weight,
    "int4wo-64": lambda: int4_weight_only(group_size=64),
    "int4wo-128": lambda: int4_weight_only(group_size=128),
}


def load(name: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "testbed":
            return AutoModelForCausalLM.from_pretrained(model_dir(), dtype=torch.bfloat16).eval()
        config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=8,
                             num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=512)
        torch.manual_seed(0)
        return LlamaForCausalLM(config).to(torch.bfloat16).eval()


def tokens_per_s(model, ids, runs) -> float:
    return ids.shape[1] / (benchmark_model(model, runs, ids) / 1e3)


def run(name: str, quick: bool):
    base = load(name)
    decode, prefill = torch.randint(0, 1000, (1, 1)), torch.randint(0, 1000, (1, 128))
    runs = 5 if quick else 20
    rows = []
    for config, make in CONFIGS.items():
        model = copy.deepcopy(base)
        if make is not None:
            torchao.quantize_(model, make())
        torch._dynamo.reset()
        compiled = torch.compile(model)
        rows.append((config, tokens_per_s(compiled, decode, runs), tokens_per_s(compiled, prefill, max(2, runs // 4)), ""))
        print(f"  {name} {config}: {rows[-1][1]:.1f} tok/s decode", file=sys.stderr)
    model = copy.deepcopy(base)
    torchao.quantization.AUTOQUANT_CACHE.clear()
    torch._dynamo.reset()
    start = time.perf_counter()
    compiled = torchao.autoquant(torch.compile(model), manual=True, quiet=True)
    with torch.no_grad():
        compiled(decode)  # record both shapes, then benchmark, swap and compile
        compiled(prefill)
        compiled.finalize_autoquant()
        compiled(decode)
    spent = time.perf_counter() - start
    chosen = ", ".join(f"{c}x{n}" for c, n in _count(model.autoquant_plan.choices).items())
    rows.append(("autoquant", tokens_per_s(compiled, decode, runs), tokens_per_s(compiled, prefill, max(2, runs // 4)),
                 f"{spent:.0f} s; {chosen}"))
    return rows


def _count(choices):
    out = {}
    for c in choices:
        out[c.chosen] = out.get(c.chosen, 0) + 1
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["testbed", "large"], choices=["testbed", "large"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, bf16, torch.compile\n")
    print("| model | variant | decode tok/s | prefill tok/s | autoquant time and choices |")
    print("|---|---|---|---|---|")
    for name in args.models:
        for variant, dec, pre, note in run(name, args.quick):
            print(f"| {name} | {variant} | {dec:.1f} | {pre:.0f} | {note} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
