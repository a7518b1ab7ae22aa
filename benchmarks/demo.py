"""The first thing to run: quantize a real Llama with every config and print what it costs and saves.

    python benchmarks/demo.py [--model DIR] [--dtype bf16|fp32] [--no-compile]

For each config: size of the saved state_dict and of the weights in memory, logits SQNR and perplexity
against the float model on held-out text, and forward latency (one token, and a 128-token prompt),
eager and torch.compile'd. Default model: the test-bed Llama vendored in benchmarks/assets (bf16).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings
from pathlib import Path

import torch

import torchao
from torchao.dtypes import AffineQuantizedTensor
from torchao.quantization import (
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
)
from torchao.utils import benchmark_model

DEFAULT_MODEL = Path(__file__).resolve().parent / "assets" / "pyllama-5m-bf16"  # the test bed, vendored
CONFIGS = {
    "float": None,
    "int8wo": int8_weight_only,
    "int4wo-128": lambda: int4_weight_only(group_size=128),
    "int4wo-64": lambda: int4_weight_only(group_size=64),
    "int8dq": int8_dynamic_activation_int8_weight,
    "8da4w-32": lambda: int8_dynamic_activation_int4_weight(32),
}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes the parameters and buffers occupy (a quantized weight counts its packed inner tensors)."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        inner = t.inner_tensors().values() if isinstance(t, AffineQuantizedTensor) else [t]
        total += sum(i.numel() * i.element_size() for i in inner)
    return total


def saved_bytes(model: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    return (20 * torch.log10(ref.norm() / (ref - out).norm())).item()


def perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
    return loss.exp().item()


def load_model(path: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()


def evaluation_ids(path: Path, length: int = 256) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    val, sample = path / "val.txt", path / "sample.txt"
    if val.exists():
        text = val.read_text()[len(val.read_text()) // 2:]
    elif sample.exists():
        text = sample.read_text()
    else:
        text = "def main():\n    return 0\n" * 200
    return tokenizer(text[:20 * length], return_tensors="pt").input_ids[:, :length]


def measure(name: str, model, ids, reference_logits, compile_model: bool) -> dict:
    with torch.no_grad():
        logits = model(ids).logits
    row = {
        "config": name,
        "disk MB": saved_bytes(model) / 2**20,
        "memory MB": weight_bytes(model) / 2**20,
        "SQNR dB": sqnr(reference_logits, logits) if name != "float" else float("inf"),
        "ppl": perplexity(logits, ids),
        "eager 1 tok ms": benchmark_model(model, 20, ids[:, :1]),
        "eager 128 tok ms": benchmark_model(model, 5, ids[:, :128]),
    }
    if compile_model:
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True)
        row["compiled 1 tok ms"] = benchmark_model(compiled, 20, ids[:, :1])
        row["compiled 128 tok ms"] = benchmark_model(compiled, 5, ids[:, :128])
    return row


def format_table(rows) -> str:
    columns = list(rows[0])
    cells = [[f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda values: "| " + " | ".join(v.rjust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep] + [line(row) for row in cells])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a local transformers causal-LM directory")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile columns (faster)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args(argv)
    if not (args.model / "config.json").exists():
        print(f"error: no transformers checkpoint at {args.model} (expected config.json there); pass --model DIR",
              file=sys.stderr)
        return 2

    dtype = DTYPES[args.dtype]
    ids = evaluation_ids(args.model)
    with torch.no_grad():
        reference_logits = load_model(args.model, dtype)(ids).logits
    rows = []
    for name in args.configs:
        model = load_model(args.model, dtype)
        if CONFIGS[name] is not None:
            torchao.quantize_(model, CONFIGS[name]())
        rows.append(measure(name, model, ids, reference_logits, not args.no_compile))
        print(f"  measured {name}", file=sys.stderr)
    print(f"\n{args.model.name}, {args.dtype}, torch {torch.__version__}, {os.cpu_count()} CPU threads, "
          f"SQNR/perplexity on {ids.shape[1]} held-out tokens\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
