"""Command line: ``python -m torchao quantize | eval | bench``.

    python -m torchao quantize MODEL_DIR --method int4wo --group-size 128 --out OUT_DIR
    python -m torchao quantize MODEL_DIR --method gptq --bits 4 --calib calib.txt --out OUT_DIR
    python -m torchao eval [eval_quality.py options]
    python -m torchao bench [generate.py options]

``quantize`` loads a local transformers causal-LM checkpoint, quantizes it, saves it with
save_quantized (a save_pretrained directory plus our files) and prints the sizes and a perplexity check.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import List, Optional

import torch

METHODS = ["int8wo", "int4wo", "int8dq", "gptq", "autoround", "autoquant"]
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class CLIError(Exception):
    pass


def _load(model_dir: Path):
    if not model_dir.is_dir():
        raise CLIError(f"{model_dir} is not a directory")
    config = model_dir / "config.json"
    if not config.exists():
        raise CLIError(f"{model_dir} has no config.json: expected a local transformers checkpoint directory")
    architectures = json.loads(config.read_text()).get("architectures") or []
    if not any(a.endswith("ForCausalLM") for a in architectures):
        raise CLIError(f"unsupported architecture {architectures or 'unknown'}: `quantize` handles causal language "
                       "models (*ForCausalLM)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def _calibration_text(path: Optional[Path], tokenizer, seqlen: int, needed: bool) -> Optional[str]:
    if path is None:
        if needed:
            raise CLIError("this method calibrates: pass --calib FILE.txt (plain text)")
        return None
    if not path.is_file():
        raise CLIError(f"calibration file {path} does not exist")
    text = path.read_text()
    tokens = len(tokenizer(text).input_ids)
    if needed and tokens < 2 * seqlen:
        raise CLIError(f"calibration file {path} has {tokens} tokens; it needs at least {2 * seqlen} "
                       f"(two windows of --seqlen {seqlen}: one to calibrate, one to check perplexity)")
    return text


def _config(args, calib: Optional[str], tokenizer):
    from torchao.quantization import (
        autoround,
        gptq,
        int4_weight_only,
        int8_dynamic_activation_int8_weight,
        int8_weight_only,
        intx_weight_only,
    )

    half = calib[: len(calib) // 2] if calib else None
    return {
        "int8wo": lambda: int8_weight_only(),
        "int4wo": lambda: int4_weight_only(group_size=args.group_size) if args.bits == 4
        else intx_weight_only(args.bits, args.group_size),
        "int8dq": lambda: int8_dynamic_activation_int8_weight(),
        "gptq": lambda: gptq([half], bits=args.bits, group_size=args.group_size, tokenizer=tokenizer, seqlen=args.seqlen,
                             n_samples=args.n_samples),
        "autoround": lambda: autoround([half], bits=args.bits, group_size=args.group_size, tokenizer=tokenizer,
                                       seqlen=args.seqlen, iters=args.iters, n_samples=args.n_samples,
                                       bs=min(8, args.n_samples)),
    }[args.method]()


def quantize_command(args) -> int:
    import torchao
    from torchao._eval import perplexity
    from torchao.utils import weight_bytes

    model, tokenizer = _load(args.model_dir)
    calibrates = args.method in ("gptq", "autoround")
    calib = _calibration_text(args.calib, tokenizer, args.seqlen, calibrates)
    check_ids = tokenizer(calib[len(calib) // 2:], return_tensors="pt").input_ids[0] if calib else None
    before_mb = weight_bytes(model) / 2**20
    ppl_before = perplexity(model, check_ids, args.seqlen, 8) if check_ids is not None and check_ids.numel() >= args.seqlen else None
    if args.method == "autoquant":
        sample = check_ids[: args.seqlen].unsqueeze(0) if check_ids is not None else torch.randint(0, 100, (1, 64))
        torchao.autoquant(model, sample, quiet=False)
    else:
        blocks = lambda m, n: isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")  # noqa: E731
        torchao.quantize_(model, _config(args, calib, tokenizer), filter_fn=blocks if calibrates else None)
    torchao.save_quantized(model, args.out, tokenizer=tokenizer)
    after_mb = weight_bytes(model) / 2**20
    print(f"saved {args.out} ({args.method}): weights {before_mb:.1f} MB -> {after_mb:.1f} MB "
          f"({after_mb / before_mb:.2f}x)")
    if ppl_before is not None:
        ppl_after = perplexity(model, check_ids, args.seqlen, 8)
        print(f"perplexity on the second half of {args.calib}: {ppl_before:.3f} -> {ppl_after:.3f}")
    return 0


def _run_script(name: str, argv: List[str]) -> int:
    script = BENCHMARKS / name
    if not script.exists():
        raise CLIError(f"{script} not found: `eval` and `bench` run the repository's benchmarks/ scripts")
    sys.argv = [str(script)] + argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m torchao", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="quantize a local transformers checkpoint and save it")
    q.add_argument("model_dir", type=Path)
    q.add_argument("--method", choices=METHODS, required=True)
    q.add_argument("--bits", type=int, default=4)
    q.add_argument("--group-size", type=int, default=128)
    q.add_argument("--calib", type=Path, default=None, help="plain-text calibration file (gptq, autoround)")
    q.add_argument("--seqlen", type=int, default=256)
    q.add_argument("--iters", type=int, default=200, help="AutoRound steps per block")
    q.add_argument("--n-samples", type=int, default=128, help="calibration windows")
    q.add_argument("--out", type=Path, required=True)
    sub.add_parser("eval", help="benchmarks/eval_quality.py (options pass through)", add_help=False)
    sub.add_parser("bench", help="benchmarks/generate.py (options pass through)", add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["eval"]:
            return _run_script("eval_quality.py", argv[1:])
        if argv[:1] == ["bench"]:
            return _run_script("generate.py", argv[1:])
        args = build_parser().parse_args(argv)
        return quantize_command(args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
