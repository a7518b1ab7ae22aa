"""llama.cpp against torchao on the same random-weight Llama, in one run (a process per engine and format): decode
and prefill tokens/s, the weight bytes read per second, and the machine's read bandwidth measured in the same run.

    pip install -e '.[llama-cpp]'      # builds llama.cpp from source (about 10 minutes on 2 cores)
    python benchmarks/bench_llamacpp.py [--shape 1b|small] [--threads 2] [--tokens 64] [--prefill 128 512]

The model is benchmarks/llama.py's Llama with seeded random weights (--shape 1b: TinyLlama-1.1B's shape).
llama.cpp gets the same weights as GGUF files written by torchao's ``save_gguf`` (BF16, and the block Linear
layers as Q8_0 / Q4_0); torchao runs its configs on the same block Linear layers (lm_head stays bf16 in both).
Decode: greedy, batch 1 (and batch 8 for torchao), after a 128-token prompt, with a KV cache of prompt + new
tokens (prefill: of its longest length), compiled (Inductor freezing, the C++ wrapper, and max-autotune for the
quantized models and the float batch-1 decode step, see generate.cpu_compile_options; one graph per config and
shape; dynamo's recompile limit raises instead of silently running eager).
Prefill: one forward of --prefill tokens, the fastest of 3. GB/s: weight bytes read per decode step (embeddings
excluded; of torchao's CPU int4 layout the packed weights and kernel scales, not the original qparams it keeps
for exact unpacking) x steps/s; "of bw": against the read bandwidth
of a 1 GiB ``torch.sum`` measured by the row's own process just before it builds its model ("bw GB/s": the
machine's read rate drifts during a run). Both use --threads threads. Each row prints (with the process's
resident memory) as soon as it is measured, the table at the end. Each engine and format runs in a process of
its own (this script re-run with --worker), so no config's compiled graphs, frozen weights or heap stay
resident while the next one runs, and each starts from a fresh dynamo.

On CPUs with AMX, llama-cpp-python 0.3.36's native build crashes in ``ggml_backend_amx_mul_mat``; build it
with the AVX-512 kernels and without AMX instead:
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX2=ON
-DGGML_FMA=ON -DGGML_F16C=ON" pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python==0.3.36
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import RANDOM_SHAPES, cpu_compile_options, cpu_inductor_freezing, generate  # noqa: E402
from llama import Llama, LlamaArgs  # noqa: E402
from llama_cpp_vs_torchao import decode_llama_cpp  # noqa: E402

SHAPES = {**RANDOM_SHAPES, "small": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                                         num_attention_heads=8, num_key_value_heads=4, vocab_size=4096)}
PROMPT = 128
#: each prefill length runs this many times (after a first, compiling one), the fastest counts
PREFILL_RUNS = 3


def best_of(runs: int, seconds, *args) -> float:
    """The fewest seconds of ``runs`` calls of ``seconds(*args)`` (each returns its own time)."""
    return min(seconds(*args) for _ in range(runs))


def in_blocks(module, fqn: str) -> bool:
    return isinstance(module, torch.nn.Linear) and fqn.startswith("model.layers.")


def llama_cpp_formats():
    """GGUF type -> the torchao config whose weights it holds exactly (None: bf16 as it is)."""
    from torchao.quantization import IntxWeightOnlyConfig, Q4_0Config

    return {"BF16": None, "Q8_0": IntxWeightOnlyConfig(8, 32, sym=True), "Q4_0": Q4_0Config()}


def torchao_configs():
    """Our configs, by name (None: bf16 as it is)."""
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt4WeightConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    return {"bf16": None, "int8wo": Int8WeightOnlyConfig(), "int8wo-a8": Int8WeightOnlyConfig(int8_activations=True),
            "int8dq": Int8DynamicActivationInt8WeightConfig(), "int4wo-128": Int4WeightOnlyConfig(128),
            "int4wo-128-a8": Int4WeightOnlyConfig(128, int8_activations=True),
            "8da4w-32": Int8DynamicActivationInt4WeightConfig(32)}


def read_bandwidth() -> float:
    """GB/s of ``torch.sum`` over 1 GiB of float32, best of 3."""
    data = torch.ones(2**28)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best / 1e9


def random_llama(shape: str) -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaArgs(max_position_embeddings=1024, **SHAPES[shape])).to(torch.bfloat16).eval()


def placeholder_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer of ``vocab_size`` tokens and one merge: llama.cpp needs a vocabulary in the
    GGUF to load it, and both engines are fed token ids directly."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merge = (alphabet[0], alphabet[1])  # llama.cpp wants at least one merge
    tokens = alphabet + ["".join(merge)] + [f"<t{i}>" for i in range(vocab_size - len(alphabet) - 1)]
    backend = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=[merge]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def as_transformers(model: Llama):
    """The same weights in a transformers LlamaForCausalLM (what save_gguf reads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    a = model.args
    config = LlamaConfig(vocab_size=a.vocab_size, hidden_size=a.hidden_size, intermediate_size=a.intermediate_size,
                         num_hidden_layers=a.num_hidden_layers, num_attention_heads=a.num_attention_heads,
                         num_key_value_heads=a.num_key_value_heads, rms_norm_eps=a.rms_norm_eps,
                         rope_theta=a.rope_theta, max_position_embeddings=a.max_position_embeddings,
                         tie_word_embeddings=False)
    hf = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    hf.load_state_dict(model.state_dict(), strict=False)
    return hf


def write_gguf(hf_model, config, directory: Path) -> Path:
    from torchao.io.gguf_format import save_gguf
    from torchao.quantization import quantize_

    model = copy.deepcopy(hf_model)
    if config is not None:
        quantize_(model, config, filter_fn=in_blocks)
    return save_gguf(model, directory, tokenizer=placeholder_tokenizer(model.config.vocab_size))


def gguf_weight_bytes(path: Path) -> int:
    """Bytes of the GGUF's tensors a decode step reads (all but the token embeddings)."""
    from gguf import GGUFReader

    return sum(int(t.n_bytes) for t in GGUFReader(str(path)).tensors if t.name != "token_embd.weight")


def run_llama_cpp(path: Path, prompt: list, tokens: int, prefill: list, threads: int) -> dict:
    from llama_cpp import Llama as LlamaCpp

    context = max(prefill + [len(prompt) + tokens]) + 8
    # n_batch = n_ctx: every prefill is one batch, and llama-cpp-python keeps a logits row per position
    llm = LlamaCpp(str(path), n_ctx=context, n_batch=context, n_threads=threads, n_threads_batch=threads,
                   verbose=False)
    try:
        llm.eval(prompt)  # warm up
        decode = decode_llama_cpp(llm, torch.tensor(prompt), tokens)
        def prefill_once(length: int) -> float:
            llm.reset()
            start = time.perf_counter()
            llm.eval(list(range(1, length + 1)))
            return time.perf_counter() - start

        return {"decode": decode, "prefill": {n: n / best_of(PREFILL_RUNS, prefill_once, n) for n in prefill}}
    finally:
        llm.close()


def run_torchao(base: Llama, config, prompt: torch.Tensor, tokens: int, prefill: list, batch: int) -> dict:
    from torchao.quantization import quantize_
    from torchao.utils import weight_bytes

    model = copy.deepcopy(base)
    if config is not None:
        quantize_(model, config, filter_fn=in_blocks)
    torch._dynamo.reset()  # this config's graphs only; each shape below compiles once
    def compiled(rows: int):
        options = cpu_compile_options(config is None, rows)
        return torch.compile(model, fullgraph=True, dynamic=False, options=options)

    # a KV cache of the positions each phase uses (attention over a static cache reads all of it; llama.cpp's
    # attends to the cells in use): decode prompt + tokens, prefill its longest length
    decode_seq, prefill_seq = prompt.shape[1] + tokens, max(prefill + [1])
    result = {"weight_bytes": weight_bytes(model, skip_embeddings=True, matmul_only=True)}
    for rows in (1, batch):
        ids = prompt.expand(rows, -1).contiguous()
        step = compiled(rows)
        generate(model, step, ids, 4, decode_seq)  # compile the decode step
        result[f"decode_{rows}"] = generate(model, step, ids, tokens, decode_seq)[1]

    step = compiled(PROMPT)

    def prefill_once(length: int) -> float:
        ids = torch.arange(1, length + 1).reshape(1, -1)
        model.setup_caches(1, prefill_seq)
        start = time.perf_counter()
        step(ids, torch.arange(length))
        return time.perf_counter() - start

    with torch.no_grad():
        for length in prefill:
            prefill_once(length)  # compile this length
        result["prefill"] = {n: n / best_of(PREFILL_RUNS, prefill_once, n) for n in prefill}
    return result


def resident_gb() -> float:
    """This process's resident memory, GB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e9


def measure_one(engine: str, name: str, args) -> dict:
    """One engine and format, measured in this process: {"weight_bytes", "decode", "batched", "prefill",
    "bandwidth" (GB/s, read_bandwidth in this process before the model is built), "resident_gb"}."""
    bandwidth = read_bandwidth()  # in this worker, just before its model: the machine's read rate drifts
    base = random_llama(args.shape)
    prompt = torch.randint(1, base.args.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    if engine == "llama.cpp":
        with tempfile.TemporaryDirectory() as tmp:
            path = write_gguf(as_transformers(base), llama_cpp_formats()[name], Path(tmp))
            result = run_llama_cpp(path, prompt[0].tolist(), args.tokens, args.prefill, args.threads)
            nbytes = gguf_weight_bytes(path)
        return {"weight_bytes": nbytes, "decode": result["decode"], "batched": None, "prefill": result["prefill"],
                "bandwidth": bandwidth, "resident_gb": resident_gb()}
    # never let the recompile limit drop a shape to eager unnoticed
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    cpu_inductor_freezing()
    r = run_torchao(base, torchao_configs()[name], prompt, args.tokens, args.prefill, args.batch)
    return {"weight_bytes": r["weight_bytes"], "decode": r["decode_1"], "batched": r[f"decode_{args.batch}"],
            "prefill": r["prefill"], "bandwidth": bandwidth, "resident_gb": resident_gb()}


def measure_in_subprocess(engine: str, name: str, argv: list) -> dict:
    """``measure_one`` in a fresh Python process (its result is the last line it prints, as JSON)."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", engine, name]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["prefill"] = {int(length): rate for length, rate in result["prefill"].items()}
    return result


def table_row(name: str, nbytes: int, decode: float, batched, prefill: dict, bandwidth: float, batch: int) -> str:
    gbs = nbytes * decode / 1e9
    batched_cell = "-" if batched is None else f"{batched:.1f} ({batched / decode:.1f}x)"
    cells = [name, f"{nbytes / 2**20:.0f}", f"{decode:.1f}", f"{gbs:.1f}", f"{bandwidth:.1f}", f"{gbs / bandwidth:.0%}",
             batched_cell, *(f"{rate:.0f}" for rate in prefill.values())]
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="1b", choices=sorted(SHAPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prefill", type=int, nargs="*", default=[128, 512])
    parser.add_argument("--batch", type=int, default=8, help="the larger decode batch (torchao)")
    parser.add_argument("--engines", nargs="*", default=["llama.cpp", "torchao"], choices=["llama.cpp", "torchao"])
    parser.add_argument("--configs", nargs="*", default=list(torchao_configs()), choices=list(torchao_configs()),
                        help="torchao's rows")
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "FORMAT"), help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure_one(*args.worker, args)))
        return 0
    runs = [("llama.cpp", kind) for kind in llama_cpp_formats() if "llama.cpp" in args.engines]
    runs += [("torchao", name) for name in torchao_configs() if "torchao" in args.engines and name in args.configs]
    rows, bandwidths = [], []
    for engine, name in runs:
        r = measure_in_subprocess(engine, name, argv)
        bandwidths.append(r["bandwidth"])
        rows.append(table_row(f"{engine} {name}", r["weight_bytes"], r["decode"], r["batched"], r["prefill"],
                              r["bandwidth"], args.batch))
        print(f"  {rows[-1]}  (resident {r['resident_gb']:.1f} GB)", file=sys.stderr, flush=True)
    print(f"\n{args.shape} Llama shape, random weights, {args.threads} threads, torch {torch.__version__}; "
          f"{args.tokens} greedy tokens after a {PROMPT}-token prompt; read bandwidth (1 GiB torch.sum, "
          f"measured by each row's process before its model) {min(bandwidths):.1f}-{max(bandwidths):.1f} GB/s\n")
    header = ["engine, format", "weights MB", "decode tok/s", "GB/s", "bw GB/s", "of bw", f"batch {args.batch} tok/s",
              *(f"prefill {n} tok/s" for n in args.prefill)]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(args.prefill))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
