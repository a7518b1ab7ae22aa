"""Command line: ``python -m torchao quantize | eval | bench``.

    python -m torchao quantize MODEL_DIR --method int4wo --group-size 128 --out OUT_DIR
    python -m torchao quantize MODEL_DIR --method gptq --bits 4 --calib calib.txt --out OUT_DIR
    python -m torchao eval [eval_quality.py options]
    python -m torchao bench [generate.py options]

``quantize`` loads a local transformers causal-LM checkpoint, quantizes the Linear layers of its blocks
(``lm_head`` stays in float unless --include-lm-head, for every method alike), saves it with
save_quantized (a save_pretrained directory: ``AutoModelForCausalLM.from_pretrained(OUT_DIR)`` or
``torchao.load_quantized(OUT_DIR)`` loads it)
and prints the sizes and a perplexity check before and after (on the second half of --calib, or on the
test bed's held-out Python source when no --calib is given).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import List, Optional

import torch

METHODS = ["int8wo", "int4wo", "int8dq", "q4_0", "gptq", "autoround", "autoquant"]
CALIBRATED = ("gptq", "autoround")
#: how to load what each --format wrote
LOAD_HINTS = {
    "torchao": "load it with: torchao.load_quantized('{out}') or transformers.AutoModelForCausalLM.from_pretrained('{out}')",
    "gguf": "run it with llama.cpp: llama-cli -m {out}/model.gguf (or llama_cpp.Llama('{out}/model.gguf'))",
    **{name: "load it with: torchao.load_quantized('{out}'), vllm serve {out}, or from_pretrained('{out}') with "
             + reader for name, reader in (("gptq", "gptqmodel"), ("auto_round", "auto-round"),
                                           ("compressed_tensors", "compressed-tensors"))},
}
#: checkpoint formats that store integer zero points (int4wo quantizes with one for them; GGUF's Q4_1 takes a
#: float offset)
INTEGER_ZERO_FORMATS = ("gptq", "auto_round", "compressed_tensors")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class CLIError(Exception):
    pass


def _check_arguments(args) -> None:
    """Every argument checked before the model is loaded (loading can take minutes)."""
    if not args.model_dir.is_dir():
        raise CLIError(f"{args.model_dir} is not a directory")
    config = args.model_dir / "config.json"
    if not config.exists():
        raise CLIError(f"{args.model_dir} has no config.json: expected a local transformers checkpoint directory")
    architectures = json.loads(config.read_text()).get("architectures") or []
    if not any(a.endswith("ForCausalLM") for a in architectures):
        raise CLIError(f"unsupported architecture {architectures or 'unknown'}: `quantize` handles causal language "
                       "models (*ForCausalLM)")
    if not 1 <= args.bits <= 8:
        raise CLIError(f"--bits {args.bits}: choose 1 to 8")
    if args.method in ("int8wo", "int8dq") and args.bits != 8:
        args.bits = 8  # the int8 methods have one width; --bits is for int4wo / gptq / autoround
    if args.group_size is not None and args.group_size != -1 and args.group_size < 1:
        raise CLIError(f"--group-size {args.group_size}: give a positive group size, or -1 for one group per row")
    for name in ("seqlen", "n_samples", "iters"):
        if getattr(args, name) < (0 if name == "iters" else 1):
            raise CLIError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be positive")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file; give a directory (it is created if missing)")
    if args.method in CALIBRATED and args.calib is None:
        raise CLIError(f"--method {args.method} calibrates: pass --calib FILE.txt (plain text)")
    if args.calib is not None and not args.calib.is_file():
        raise CLIError(f"calibration file {args.calib} does not exist")


def _load(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def _calibration_text(path: Optional[Path], tokenizer, seqlen: int, needed: bool) -> Optional[str]:
    if path is None:
        return None
    text = path.read_text()
    tokens = len(tokenizer(text).input_ids)
    if needed and tokens < 2 * seqlen:
        raise CLIError(f"calibration file {path} has {tokens} tokens; it needs at least {2 * seqlen} "
                       f"(two windows of --seqlen {seqlen}: one to calibrate, one to check perplexity)")
    return text


def _check_text(calib: Optional[str], calib_path: Optional[Path]):
    """(held-out text for the perplexity check, where it comes from)."""
    if calib:
        return calib[len(calib) // 2:], f"the second half of {calib_path}"
    from torchao.testbed import heldout_text

    return heldout_text(), "the packaged test bed's held-out Python source (pass --calib for your own text)"


def _rtn(bits: int, group_size: int, integer_zero: bool = False):
    """Round-to-nearest weight-only config: the int4 kernels' config at 4 bits with groups (an integer zero
    point when ``integer_zero``, which the GPTQ / AutoRound formats need), else intx."""
    from torchao.qtensor import ZeroPointDomain
    from torchao.quantization import int4_weight_only, intx_weight_only

    group = None if group_size == -1 else group_size
    if bits == 4 and group:
        return int4_weight_only(group_size=group,
                                zero_point_domain=ZeroPointDomain.INT if integer_zero else ZeroPointDomain.FLOAT)
    return intx_weight_only(bits, group)


def _config(args, calib: Optional[str], tokenizer):
    from torchao.quantization import Q4_0Config, autoround, gptq, int8_dynamic_activation_int8_weight, int8_weight_only

    half = calib[: len(calib) // 2] if calib else None
    return {
        "int8wo": lambda: int8_weight_only(),
        "int4wo": lambda: _rtn(args.bits, args.group_size, integer_zero=args.format in INTEGER_ZERO_FORMATS),
        "int8dq": lambda: int8_dynamic_activation_int8_weight(),
        "q4_0": lambda: Q4_0Config(),
        "gptq": lambda: gptq([half], bits=args.bits, group_size=args.group_size, tokenizer=tokenizer, seqlen=args.seqlen,
                             n_samples=args.n_samples),
        "autoround": lambda: autoround([half], bits=args.bits, group_size=args.group_size, tokenizer=tokenizer,
                                       seqlen=args.seqlen, iters=args.iters, n_samples=args.n_samples,
                                       bs=min(8, args.n_samples)),
    }[args.method]()


def _layer_filter(include_lm_head: bool):
    """The Linear layers every method quantizes: all of them but ``lm_head`` unless it is included."""
    return lambda m, fqn: isinstance(m, torch.nn.Linear) and (include_lm_head or not fqn.endswith("lm_head"))


def quantize_command(args) -> int:
    import torchao
    from torchao.quant_api.evaluation import perplexity
    from torchao.quant_api.calibration import CalibrationError
    from torchao.quant_api.configs import UnsupportedWeight
    from torchao.io.gptq_format import UnsupportedExport
    from torchao.utils import weight_bytes

    _check_arguments(args)
    model, tokenizer = _load(args.model_dir)
    calib = _calibration_text(args.calib, tokenizer, args.seqlen, args.method in CALIBRATED)
    check_text, check_source = _check_text(calib, args.calib)
    check_ids = tokenizer(check_text, return_tensors="pt").input_ids[0]
    check = (lambda m: perplexity(m, check_ids, args.seqlen, 8)) if check_ids.numel() >= args.seqlen else None
    before_mb = weight_bytes(model) / 2**20
    ppl_before = check(model) if check else None
    layers = _layer_filter(args.include_lm_head)
    if args.method == "autoquant":
        sample = check_ids[: args.seqlen].unsqueeze(0)
        torchao.autoquant(model, sample, quiet=False, filter_fn=layers)
    else:
        try:
            torchao.quantize_(model, _config(args, calib, tokenizer), filter_fn=layers, strict=not args.allow_partial)
            if args.method in CALIBRATED and args.include_lm_head:  # outside the blocks: round to nearest
                torchao.quantize_(model, _rtn(args.bits, args.group_size, integer_zero=args.format in INTEGER_ZERO_FORMATS),
                                  filter_fn=lambda m, fqn: fqn.endswith("lm_head"),
                                  strict=not args.allow_partial)
        except (UnsupportedWeight, CalibrationError) as e:
            raise CLIError(f"{e} (pass --allow-partial to keep such layers in float)") from None
    quantized = sum(isinstance(m.weight, torchao.dtypes.AffineQuantizedTensor)
                    for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    total = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    try:
        torchao.save_quantized(model, args.out, tokenizer=tokenizer, format=args.format)
    except UnsupportedExport as e:
        raise CLIError(f"--format {args.format}: {e}") from None
    after_mb = weight_bytes(model) / 2**20
    print(f"saved {args.out} ({args.method}): weights {before_mb:.1f} MB -> {after_mb:.1f} MB "
          f"({after_mb / before_mb:.2f}x); {quantized} of {total} Linear layers quantized, "
          f"lm_head {'quantized' if args.include_lm_head else 'kept in float'}")
    if ppl_before is not None:
        print(f"perplexity on {check_source}: {ppl_before:.3f} -> {check(model):.3f}")
    print(LOAD_HINTS[args.format].format(out=str(args.out)))
    return 0


def _run_script(name: str, argv: List[str]) -> int:
    script = BENCHMARKS / name
    if not script.exists():
        raise CLIError(f"{script} not found: `eval` and `bench` run the repository's benchmarks/ scripts")
    sys.argv = [str(script)] + argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m torchao", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="quantize a local transformers causal-LM checkpoint and save it",
                       description="Quantize a local transformers causal-LM checkpoint and save it.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("model_dir", type=Path, help="local transformers checkpoint directory (config.json, weights, "
                                                "tokenizer) of a *ForCausalLM model")
    q.add_argument("--method", choices=METHODS, required=True,
                   help="int8wo / int4wo: round-to-nearest weight-only; int8dq: int8 weights and dynamic int8 "
                        "activations; q4_0: GGUF's Q4_0 (4-bit symmetric, blocks of 32, float16 scales; exact in "
                        "--format gguf); gptq / autoround: calibrated (need --calib); autoquant: fastest per layer")
    q.add_argument("--bits", type=int, default=4, help="weight bits for int4wo (1-8), gptq and autoround (2, 3, 4, 8)")
    q.add_argument("--group-size", type=int, default=128,
                   help="weights per scale / zero point along the input dimension (-1: one group per row); "
                        "must divide every quantized layer's in_features")
    q.add_argument("--calib", type=Path, default=None,
                   help="plain-text file: its first half calibrates gptq / autoround, its second half is the "
                        "perplexity check; without it the check uses the packaged test bed's held-out text")
    q.add_argument("--seqlen", type=int, default=256, help="tokens per calibration / perplexity window")
    q.add_argument("--iters", type=int, default=200, help="AutoRound tuning steps per block")
    q.add_argument("--n-samples", type=int, default=128, help="calibration windows (gptq, autoround)")
    q.add_argument("--include-lm-head", action="store_true", help="also quantize lm_head (smaller, less accurate; round-to-nearest for gptq / autoround)")
    q.add_argument("--allow-partial", action="store_true",
                   help="keep layers the method cannot serve (e.g. a group size that does not divide them) in "
                        "float instead of failing")
    q.add_argument("--format", choices=["torchao", "gptq", "auto_round", "compressed_tensors", "gguf"], default="torchao",
                   help="checkpoint layout: torchao (transformers' torchao format, every method), gptq / auto_round / "
                        "compressed_tensors (what vLLM, SGLang and auto-round load: integer zero points, one bits / "
                        "group size for the model), gguf (model.gguf for llama.cpp: Q4_0 / Q4_1 / Q8_0 in blocks of 32)")
    q.add_argument("--out", type=Path, required=True, help="output directory (created; existing files replaced)")
    sub.add_parser("eval", help="benchmarks/eval_quality.py: quality of RTN / HQQ / GPTQ / AutoRound "
                                "(options pass through; eval --help)", add_help=False)
    sub.add_parser("bench", help="benchmarks/generate.py: decoding speed per config "
                                 "(options pass through; bench --help)", add_help=False)
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
