"""Tutorial: GPTQ and AutoRound on the test-bed Llama, against plain rounding.

    python tutorials/calibrated_quantization.py [--fast] [--model DIR]

Both calibrate on local text (no hub), block by block, and leave kernel-ready int4 weights.
"""

import argparse
import copy
import sys
from pathlib import Path

import torch

import torchao
from torchao.quant_api.evaluation import perplexity
from torchao.quantization import autoround, gptq, intx_weight_only
from torchao.testbed import calibration_text, heldout_text, model_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--model", type=Path, default=None,
                        help="causal-LM directory with val.txt (default: the packaged test bed, or $TORCHAO_TESTBED)")
    args = parser.parse_args(argv)
    args.model = args.model or model_dir()
    if not (args.model / "config.json").exists():
        print(f"no checkpoint at {args.model}; pass --model DIR", file=sys.stderr)
        return 2
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    calib, held_out = calibration_text(args.model), heldout_text(args.model)
    ids = tokenizer(held_out[:200_000], return_tensors="pt").input_ids[0]
    base = AutoModelForCausalLM.from_pretrained(args.model).eval()
    windows, n, iters = (4, 16, 20) if args.fast else (32, 128, 200)
    blocks = lambda m, name: isinstance(m, torch.nn.Linear) and ".layers." in name  # noqa: E731
    results = {"float": perplexity(base, ids, 256, windows)}
    for name, config in [
        ("rtn w3g128", intx_weight_only(3, 128)),
        ("gptq w3g128", gptq([calib], bits=3, group_size=128, tokenizer=tokenizer, seqlen=256, n_samples=n)),
        ("autoround w3g128", autoround([calib], bits=3, group_size=128, tokenizer=tokenizer, seqlen=256,
                                       n_samples=n, iters=iters, bs=8)),
    ]:
        model = copy.deepcopy(base)
        torchao.quantize_(model, config, filter_fn=blocks)
        results[name] = perplexity(model, ids, 256, windows)
    for name, ppl in results.items():
        print(f"{name:18s} perplexity {ppl:.3f}")
    assert results["gptq w3g128"] < results["rtn w3g128"] * 1.02
    return 0


if __name__ == "__main__":
    sys.exit(main())
