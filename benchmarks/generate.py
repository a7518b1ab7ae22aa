"""Greedy generation with a static KV cache (benchmarks/llama.py): the seed README's table, measured here.

    python benchmarks/generate.py [--model testbed|1b|8b|DIR] [--device cpu|cuda] [--variants float int8wo ...]
                                  [--batch 1 8]
                                  [--modes eager compiled] [--tokens 32] [--plot out.png] [--quick]
                                  [--tp 1 2]

Per variant (each in its own process, so memory is its own): tokens/s of decoding, time to first token
(prefill of a 128-token prompt), resident memory, weight bytes, achieved bandwidth (weight bytes read per
decode step x steps/s) and, for a real checkpoint, perplexity on held-out text. bf16 throughout.
"1b" / "8b" are random-weight Llamas shaped like TinyLlama-1.1B (hidden 2048, 22 layers, MLP 5632, 4 KV
heads) and Llama-3-8B (hidden 4096, 32 layers, MLP 14336, 8 KV heads, vocab 128256; for a GPU). Memory:
resident memory on CPU, peak allocated memory on CUDA.
GPTQ and AutoRound calibrate on the first half of the test bed's val.txt (the testbed model only: on
random weights they are just int4 weights, as fast as int4wo).
``--tp 1 2``: each variant also runs with tensor parallelism over N processes (torchrun started by the
driver; gloo on CPU, nccl on CUDA, one GPU per process), its attention / MLP / lm_head weights quantized then
sharded (Llama.parallelize); the table gives tok/s per N and whether the greedy tokens equal the
single-process run's. On CPU each of N processes gets cores / N threads (torchrun's default is 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from torchao.testbed import calibration_text, heldout_text, model_dir

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ALL_VARIANTS = ["float", "int8wo", "int4wo-64", "int4wo-128", "int8dq", "8da4w", "gptq", "autoround", "autoquant"]
#: the decode step's modules are not changed between calls (new KV caches come with a new batch size, so a new
#: input shape, which is still guarded): dynamo's per-call checks of every module attribute (~2 ms a token
#: for the 1.1 B model on CPU) are skipped
COMPILE_OPTIONS = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
#: on CPU also max-autotune and Inductor's C++ wrapper (the generated graph calls its ~200 kernels and custom
#: ops from C++ instead of Python: 1.1 B 8da4w decode 29 -> 31 tok/s, 2 cores); see ``cpu_inductor_freezing``
CPU_COMPILE_OPTIONS = {**COMPILE_OPTIONS, "max_autotune": True, "cpp_wrapper": True,
                       # quiet: no table of timed GEMM choices on stderr for each tuned matmul
                       "autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}
#: for a model of float Linear layers: no max-autotune, which benchmarks every layer's GEMM choices separately
#: (~3 s each: 10+ minutes per input shape for the 1.1 B model); frozen float layers run oneDNN's prepacked GEMM
CPU_FLOAT_COMPILE_OPTIONS = {**COMPILE_OPTIONS, "cpp_wrapper": True}
#: a float model's batch-1 decode step: max-autotune restricted to Inductor's C++ GEMM template, one choice per
#: matmul, so nothing is benchmarked. At M = 1 it streams bf16 weights at 0.99 of a 1 GiB torch.sum's read rate
#: where oneDNN's prepacked GEMV reads at 0.54 (the 1.1 B model's 22 blocks of linears + lm_head, frozen, 2 cores
#: of an AMD EPYC); untuned it is slower from M = 8 (0.28 against oneDNN's 0.71), so larger batches and prefill
#: keep oneDNN
CPU_FLOAT_DECODE_COMPILE_OPTIONS = {**CPU_FLOAT_COMPILE_OPTIONS, "max_autotune": True,
                                    "max_autotune_gemm_backends": "CPP", "autotune_num_choices_displayed": 0}


def cpu_compile_options(float_model: bool, rows: int) -> dict:
    """The Inductor options of a CPU model's compiled step over ``rows`` rows (see the option sets above)."""
    if not float_model:
        return CPU_COMPILE_OPTIONS
    return CPU_FLOAT_DECODE_COMPILE_OPTIONS if rows == 1 else CPU_FLOAT_COMPILE_OPTIONS


def cpu_inductor_freezing() -> None:
    """Turn on Inductor freezing for this process (``torch._inductor.config.freezing``; it is a global setting,
    ``torch.compile(options={"freezing": True})`` does not reach the check that enables it). Weights become
    constants of graphs compiled under ``torch.no_grad()``, so float Linear layers run on prepacked weights:
    with max-autotune Inductor's C++ GEMM template (lm_head 32000 x 2048 at M = 1 reads 34.6 GB/s against 17
    for aten's bf16 GEMV; 1.1 B 8da4w decode, 2 cores: 3.8 against 6.6 ms a token), without it oneDNN's
    (22 GB/s there; bf16 decode 9.1 -> 11.7 tok/s)."""
    import torch._inductor.config

    torch._inductor.config.freezing = True


#: the variants that shard with --tp (one config applied to every Linear)
TP_VARIANTS = ["float", "int8wo", "int4wo-64", "int4wo-128", "int8dq", "8da4w"]


# ---- worker: one variant -----------------------------------------------------------------------------


#: random-weight shapes for speed: TinyLlama-1.1B and Llama-3-8B
RANDOM_SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0),
}


def load_model(name: str, device: torch.device):
    from llama import Llama, LlamaArgs

    if name in RANDOM_SHAPES:
        torch.manual_seed(0)
        with torch.device(device):
            model = Llama(LlamaArgs(max_position_embeddings=1024, **RANDOM_SHAPES[name]))
        return model.to(torch.bfloat16).eval()
    path = model_dir() if name == "testbed" else Path(name)
    return Llama.from_pretrained(path, torch.bfloat16).to(device)


def text_ids(model_name: str):
    """(calibration texts, held-out ids) for a real checkpoint; None for random weights."""
    if model_name in RANDOM_SHAPES:
        return None
    from transformers import AutoTokenizer

    path = model_dir() if model_name == "testbed" else Path(model_name)
    text_dir = path if (path / "val.txt").exists() else model_dir()  # a model without text: the test bed's
    tokenizer = AutoTokenizer.from_pretrained(path)
    return tokenizer, calibration_text(text_dir), tokenizer(heldout_text(text_dir), return_tensors="pt").input_ids[0]


def quantize(model, variant: str, texts, quick: bool):
    import torchao
    from torchao.quantization import (
        autoround,
        gptq,
        int4_weight_only,
        int8_dynamic_activation_int4_weight,
        int8_dynamic_activation_int8_weight,
        int8_weight_only,
    )

    in_blocks = lambda m, n: isinstance(m, torch.nn.Linear) and n.startswith("model.layers.")  # noqa: E731
    configs = {
        "int8wo": int8_weight_only, "int8dq": int8_dynamic_activation_int8_weight,
        "8da4w": lambda: int8_dynamic_activation_int4_weight(group_size=32),
        "int4wo-64": lambda: int4_weight_only(group_size=64), "int4wo-128": lambda: int4_weight_only(group_size=128),
    }
    if variant in configs:
        torchao.quantize_(model, configs[variant]())
    elif variant in ("gptq", "autoround"):
        if texts is None:
            raise SystemExit(f"{variant} needs a real checkpoint with calibration text")
        tokenizer, calib, _ = texts
        n = 16 if quick else 128
        config = gptq(calib, bits=4, group_size=128, tokenizer=tokenizer, seqlen=256, n_samples=n, progress=False) \
            if variant == "gptq" else autoround(calib, bits=4, group_size=128, tokenizer=tokenizer, seqlen=256,
                                                 n_samples=n, iters=20 if quick else 200, progress=False)
        torchao.quantize_(model, config, filter_fn=in_blocks)
        torchao.quantize_(model, int4_weight_only(group_size=128), filter_fn=lambda m, n: n == "lm_head")  # as int4wo
    elif variant == "autoquant":
        model = torchao.autoquant(model, manual=True, quiet=True, mode={})
        with torch.no_grad():
            model(torch.zeros(1, 128, dtype=torch.long, device=model.cos.device))
            model(torch.zeros(1, 1, dtype=torch.long, device=model.cos.device))
        model.finalize_autoquant()
    return model


def memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated memory; CPU: the process's resident memory now."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generate(model, step, prompt: torch.Tensor, new_tokens: int, max_seq: int):
    """Greedy decoding with a cache of ``max_seq`` positions (fixed, so a compiled step is reused);
    returns (time to first token s, decode tokens/s, tokens)."""
    batch, plen = prompt.shape
    device = prompt.device
    model.setup_caches(batch, max_seq)
    sync(device)
    start = time.perf_counter()
    logits = model(prompt, torch.arange(plen, device=device))
    token = logits[:, -1].argmax(-1, keepdim=True)
    sync(device)
    ttft = time.perf_counter() - start
    out = [token]
    positions = torch.arange(plen, plen + new_tokens, device=device)
    start = time.perf_counter()
    for i in range(new_tokens - 1):
        token = step(token, positions[i:i + 1]).argmax(-1)
        out.append(token)
    sync(device)
    decode = time.perf_counter() - start
    return ttft, batch * (new_tokens - 1) / decode, torch.cat(out, dim=1)


def join_processes(device: torch.device):
    """Under torchrun: the process group (nccl on CUDA, gloo on CPU), this process's device and a 1-D mesh;
    (device, None) in a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return device, None
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return device, init_device_mesh(device.type, (world,))


def worker(args) -> None:
    from torchao.quant_api.evaluation import perplexity
    from torchao.utils import weight_bytes

    texts = text_ids(args.model)
    device, mesh = join_processes(torch.device(args.device))
    model = load_model(args.model, device)
    start = time.perf_counter()
    model = quantize(model, args.worker, texts, args.quick)
    quant_s = time.perf_counter() - start
    wbytes = weight_bytes(model, skip_embeddings=True)  # all processes together read the unsharded weights
    if mesh is not None:
        model.parallelize(mesh, exact=args.tp_exact)
    ppl = perplexity(model, texts[2], 256, 4 if args.quick else 32) if texts and mesh is None else None
    lead = mesh is None or mesh.get_rank() == 0
    cpu = device.type == "cpu" and mesh is None
    if cpu:
        cpu_inductor_freezing()
    for mode in args.modes:
        torch._dynamo.reset()
        for batch in args.batch:
            options = cpu_compile_options(args.worker == "float", batch) if cpu else COMPILE_OPTIONS
            step = torch.compile(model, fullgraph=True, dynamic=False, options=options) if mode == "compiled" else model
            prompt = torch.randint(0, model.args.vocab_size, (batch, 128),
                                   generator=torch.Generator().manual_seed(batch)).to(device)
            max_seq = prompt.shape[1] + args.tokens
            generate(model, step, prompt, 4, max_seq)  # warm up / compile
            ttft, tok_s, tokens = generate(model, step, prompt, args.tokens, max_seq)
            steps_per_s = tok_s / batch
            if lead:
                print(json.dumps(dict(variant=args.worker, mode=mode, batch=batch, tp=1 if mesh is None else mesh.size(),
                                      tok_s=tok_s, ttft_ms=ttft * 1e3, memory_mb=memory_mb(device),
                                      weight_mb=wbytes / 2**20, bandwidth_gbs=wbytes * steps_per_s / 1e9,
                                      ppl=ppl, quantize_s=quant_s, tokens=tokens.tolist())), flush=True)
    if mesh is not None:
        torch.distributed.destroy_process_group()


# ---- driver ----------------------------------------------------------------------------------------


def run_variant(variant: str, args, tp: int = 1) -> list:
    launcher = [] if tp == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(tp),
                                   "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    cmd = [sys.executable, *launcher, __file__, "--worker", variant, "--model", args.model, "--device", args.device,
           "--tokens", str(args.tokens),
           "--batch", *map(str, args.batch), "--modes", *args.modes] + (["--quick"] if args.quick else []) + (
               ["--tp-exact"] if args.tp_exact else [])
    result = subprocess.run(cmd, capture_output=True, text=True)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0:
        print(f"  {variant} (tp {tp}) failed:\n{result.stderr[-2000:]}", file=sys.stderr)
    return rows


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table(rows) -> str:
    """One line per variant, mode, batch and process count; ``vs float`` against float at the same mode,
    batch and process count; ``same tokens`` against the variant's single-process run."""
    lines = ["| variant | mode | batch | tp | tok/s | vs float | same tokens as tp 1 | TTFT ms | memory MB | weights MB "
             "| GB/s | ppl |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {(r["mode"], r["batch"], r["tp"]): r["tok_s"] for r in rows if r["variant"] == "float"}
    single = {(r["variant"], r["mode"], r["batch"]): r["tokens"] for r in rows if r["tp"] == 1}
    for r in rows:
        ratio = r["tok_s"] / base[(r["mode"], r["batch"], r["tp"])] if (r["mode"], r["batch"], r["tp"]) in base else float("nan")
        ppl = "-" if r["ppl"] is None else f"{r['ppl']:.2f}"
        reference = single.get((r["variant"], r["mode"], r["batch"]))
        same = "-" if r["tp"] == 1 or reference is None else ("yes" if reference == r["tokens"] else "no")
        lines.append(f"| {r['variant']} | {r['mode']} | {r['batch']} | {r['tp']} | {r['tok_s']:.1f} | {ratio:.2f}x | "
                     f"{same} | {r['ttft_ms']:.0f} | {r['memory_mb']:.0f} | {r['weight_mb']:.1f} | "
                     f"{r['bandwidth_gbs']:.2f} | {ppl} |")
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)", file=sys.stderr)
        return
    points = [r for r in rows if r["ppl"] is not None and r["batch"] == 1 and r["mode"] == "compiled"]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in points:
        ax.scatter(r["tok_s"], r["ppl"])
        ax.annotate(r["variant"], (r["tok_s"], r["ppl"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("decode tokens/s (batch 1, compiled)")
    ax.set_ylabel("perplexity (lower is better)")
    ax.set_title("speed vs quality")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="testbed", help="testbed, 1b, 8b, or a local transformers Llama directory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--variants", nargs="*", default=ALL_VARIANTS, choices=ALL_VARIANTS)
    parser.add_argument("--batch", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--modes", nargs="*", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per generation")
    parser.add_argument("--plot", type=Path, default=None, help="write tokens/s vs perplexity as a PNG")
    parser.add_argument("--quick", action="store_true", help="few tokens and calibration samples (CI)")
    parser.add_argument("--tp", nargs="*", type=int, default=[1],
                        help=f"process counts for tensor parallelism (variants {', '.join(TP_VARIANTS)})")
    parser.add_argument("--tp-exact", action="store_true",
                        help="o_proj / down_proj sharded by output channels too: logits equal to one process's")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens = min(args.tokens, 8)
    if args.worker:
        worker(args)
        return 0
    variants = [v for v in args.variants if not (args.model in RANDOM_SHAPES and v in ("gptq", "autoround"))]
    rows = []
    for variant in variants:
        for tp in args.tp:
            if tp > 1 and variant not in TP_VARIANTS:
                print(f"  {variant} is not sharded (--tp takes {TP_VARIANTS})", file=sys.stderr)
                continue
            rows += run_variant(variant, args, tp)
            print(f"  measured {variant} on {tp} process(es)", file=sys.stderr)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads"
    print(f"\n{args.model}, bf16, torch {torch.__version__}, {where}, "
          f"{args.tokens} new tokens after a 128-token prompt\n")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
