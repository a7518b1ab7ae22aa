"""The first thing to run: quantize a real Llama with every config and print the seed README's table.

    python benchmarks/demo.py [--model DIR] [--dtype bf16|fp32] [--no-compile]

Per config, as in the seed's table: perplexity on held-out text, decode tokens/s (a one-token forward,
torch.compile'd unless --no-compile) and the memory bandwidth that implies (weight bytes read per token x
tokens/s); then the weights' size in memory, logits SQNR against the float model and the time of a
128-token prefill. Default model: the packaged test-bed Llama (torchao.testbed, bf16; $TORCHAO_TESTBED for another).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

import torchao
from torchao.quant_api.evaluation import perplexity
from torchao.quantization import (
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
)
from torchao.testbed import heldout_text, model_dir
from torchao.utils import benchmark_model, weight_bytes

CONFIGS = {
    "float": None,
    "int8wo": int8_weight_only,
    "int4wo-128": lambda: int4_weight_only(group_size=128),
    "int4wo-64": lambda: int4_weight_only(group_size=64),
    "int8dq": int8_dynamic_activation_int8_weight,
    "8da4w-32": lambda: int8_dynamic_activation_int4_weight(32),
}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    return (20 * torch.log10(ref.norm() / (ref - out).norm())).item()


def load_model(path: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # one bar per config is enough

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()


def evaluation_ids(path: Path, tokens: int = 2048) -> torch.Tensor:
    """(1, <= tokens) int64 held-out ids: the second half of the model's val.txt (else the test bed's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    text = heldout_text(path if (path / "val.txt").exists() else model_dir())
    return tokenizer(text[:8 * tokens], return_tensors="pt").input_ids[:, :tokens]


def measure(name: str, model, ids, reference_logits, compile_model: bool) -> dict:
    """One row of the table for ``model`` (already quantized with config ``name``)."""
    with torch.no_grad():
        logits = model(ids[:, :256]).logits
    runner = model
    if compile_model:
        torch._dynamo.reset()
        runner = torch.compile(model, fullgraph=True)
    step_ms = benchmark_model(runner, 20, ids[:, :1])
    weights = weight_bytes(model, skip_embeddings=True)
    return {
        "technique": name,
        "perplexity": perplexity(model, ids, seqlen=256),
        "tokens/s": 1e3 / step_ms,
        "bandwidth GB/s": weights / (step_ms / 1e3) / 1e9,
        "weights MB": weights / 2**20,
        "SQNR dB": sqnr(reference_logits, logits) if name != "float" else float("inf"),
        "prefill 128 ms": benchmark_model(runner, 5, ids[:, :128]),
    }


def format_table(rows) -> str:
    columns = list(rows[0])
    cells = [[f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda values: "| " + " | ".join(v.rjust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep] + [line(row) for row in cells])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None,
                        help="a local transformers causal-LM directory (default: the packaged test bed, or $TORCHAO_TESTBED)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile columns (faster)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args(argv)
    args.model = args.model or model_dir()
    if not (args.model / "config.json").exists():
        print(f"error: no transformers checkpoint at {args.model} (expected config.json there); pass --model DIR",
              file=sys.stderr)
        return 2

    dtype = DTYPES[args.dtype]
    ids = evaluation_ids(args.model)
    with torch.no_grad():
        reference_logits = load_model(args.model, dtype)(ids[:, :256]).logits
    rows = []
    progress = tqdm(args.configs, desc="quantize, compile, measure", unit="config", file=sys.stderr)
    for name in progress:
        progress.set_postfix_str(name)
        model = load_model(args.model, dtype)
        if CONFIGS[name] is not None:
            torchao.quantize_(model, CONFIGS[name]())
        rows.append(measure(name, model, ids, reference_logits, not args.no_compile))
        progress.write(f"  {name}: perplexity {rows[-1]['perplexity']:.2f}, {rows[-1]['tokens/s']:.1f} tokens/s",
                       file=sys.stderr)
    mode = "eager" if args.no_compile else "torch.compile"
    print(f"\n{args.model.name}, {args.dtype}, {mode}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"perplexity on {ids.shape[1]} held-out tokens, tokens/s of a one-token forward\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
