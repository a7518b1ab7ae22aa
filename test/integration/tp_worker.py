"""Run by test_tensor_parallel.py under torchrun (2 processes, gloo): each case's sharded output against the
unsharded quantized output, written by rank 0 as JSON to argv[1]."""

import json
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, SequenceParallel, parallelize_module

from torchao.quant_api.registry import Q4_0Config
from torchao.quantization import (
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
    quantize_,
)

CONFIGS = {
    "int8wo": Int8WeightOnlyConfig(),
    "int4wo-g32": Int4WeightOnlyConfig(32),
    "int8dq": Int8DynamicActivationInt8WeightConfig(),
    "q4_0": Q4_0Config(),
    "w6-g32": IntxWeightOnlyConfig(6, 32),
}
#: checkpoints saved sharded for test_tensor_parallel to load in 1 process: name -> (config name, order)
DCP_CASES = {"int8wo": ("int8wo", "quantize-then-parallelize"), "int4wo-g32": ("int4wo-g32", "parallelize-then-quantize"),
             "q4_0": ("q4_0", "quantize-then-parallelize"),
             "int8wo per-shard scales": ("int8wo", "parallelize-then-quantize")}
PLAN = {"up": ColwiseParallel(), "down": RowwiseParallel()}
#: Megatron-style plan for the test-bed Llama's 4 blocks
LLAMA_PLAN = {f"model.layers.{i}.{name}": style() for i in range(4) for name, style in (
    ("self_attn.q_proj", ColwiseParallel), ("self_attn.k_proj", ColwiseParallel), ("self_attn.v_proj", ColwiseParallel),
    ("self_attn.o_proj", RowwiseParallel), ("mlp.gate_proj", ColwiseParallel), ("mlp.up_proj", ColwiseParallel),
    ("mlp.down_proj", RowwiseParallel))}


class MLP(nn.Module):
    def __init__(self, k=128, hidden=256):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(k, hidden, bias=False).to(torch.bfloat16)
        self.down = nn.Linear(hidden, k, bias=False).to(torch.bfloat16)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


class NormMLP(nn.Module):
    """LayerNorm then the MLP: the block a sequence-parallel plan shards (the norm on sequence chunks)."""

    def __init__(self, k=128):
        super().__init__()
        self.norm = nn.LayerNorm(k).to(torch.bfloat16)
        self.mlp = MLP(k)

    def forward(self, x):
        return self.mlp(self.norm(x))


#: sequence parallelism around the quantized MLP: the norm runs on this rank's tokens, up_proj gathers them,
#: down_proj reduce-scatters its output back to sequence chunks
SEQUENCE_PLAN = {"norm": SequenceParallel(), "mlp.up": ColwiseParallel(input_layouts=Shard(1)),
                 "mlp.down": RowwiseParallel(output_layouts=Shard(1))}


def full(t):
    return t.full_tensor() if isinstance(t, DTensor) else t


def relative(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main(out_path):
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (2,))
    x = torch.randn(5, 128, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(1))
    results = {}
    for name, config in CONFIGS.items():
        reference = MLP()
        quantize_(reference, config)
        with torch.no_grad():
            expected, expected_up = reference(x), reference.up(x)
        for order in ("quantize-then-parallelize", "parallelize-then-quantize"):
            model = MLP()
            if order.startswith("quantize"):
                quantize_(model, config)
                parallelize_module(model, mesh, PLAN)
            else:
                parallelize_module(model, mesh, PLAN)
                quantize_(model, config)
            local = model.up.weight.to_local()
            # the shards gathered back (all-gather of the inner tensors): the unsharded quantized weights
            gathered = [model.up.weight.full_tensor(), model.down.weight.redistribute(placements=[Replicate()]).to_local()]
            with torch.no_grad():
                out, up = full(model(x)), model.up(x)  # ColwiseParallel hands back this rank's columns
            rank, width = dist.get_rank(), up.shape[-1]
            results[f"{name} {order}"] = {
                "local_type": type(local).__name__, "local_shape": list(local.shape),
                "up_exact": bool(torch.equal(up, expected_up[:, rank * width:(rank + 1) * width])),
                "gathered_exact": [bool(torch.equal(g.dequantize(), w.dequantize()))
                                   for g, w in zip(gathered, (reference.up.weight, reference.down.weight))],
                "relative": relative(out, expected)}
    # SequenceParallel: the input is split along the sequence (dim 1), each rank passes its tokens
    tokens = torch.randn(2, 8, 128, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(2))
    for name in ("int8wo", "int4wo-g32"):
        reference = NormMLP()
        quantize_(reference, CONFIGS[name])
        for order in ("quantize-then-parallelize", "parallelize-then-quantize"):
            model = NormMLP()
            if order.startswith("quantize"):
                quantize_(model, CONFIGS[name])
            parallelize_module(model, mesh, SEQUENCE_PLAN)
            if order.startswith("parallelize"):
                quantize_(model, CONFIGS[name])
            with torch.no_grad():  # each rank passes its tokens and gets its tokens' outputs back
                expected = reference(tokens).chunk(2, dim=1)[dist.get_rank()]
                out = model(tokens.chunk(2, dim=1)[dist.get_rank()])
            results[f"sequence {name} {order}"] = {"output_shape": list(out.shape),
                                                   "relative": relative(out, expected)}
    # the exact plan (generate.py --tp-exact): down_proj split by output channels too, its input gathered:
    # no partial sums, so the sharded MLP's output equals the unsharded one's bit for bit
    exact_plan = {"up": ColwiseParallel(), "down": ColwiseParallel(input_layouts=Shard(-1), output_layouts=Replicate())}
    for name in ("int8wo", "int4wo-g32", "q4_0"):
        reference, model = MLP(), MLP()
        quantize_(reference, CONFIGS[name])
        quantize_(model, CONFIGS[name])
        parallelize_module(model, mesh, exact_plan)
        with torch.no_grad():
            results[f"exact {name}"] = bool(torch.equal(full(model(x)), reference(x)))
    # Replicate: a broadcast of the inner tensors
    weight = Int4WeightOnlyConfig(32)(MLP().up.weight.detach())
    replicated = distribute_tensor(weight, mesh, [Replicate()]).to_local()
    results["replicate"] = {"exact": bool(torch.equal(replicated.dequantize(), weight.dequantize()))}
    # a shard boundary inside a quantization group is refused, naming the blocks
    try:
        distribute_tensor(Int4WeightOnlyConfig(64)(torch.randn(32, 192, dtype=torch.bfloat16)), mesh, [Shard(1)])
        results["cut_group"] = "no error"
    except NotImplementedError as e:
        results["cut_group"] = str(e)
    # torch.distributed.checkpoint of a sharded quantized model (test_tensor_parallel loads it in 1 process)
    import torch.distributed.checkpoint as dcp

    for name, (config, order) in DCP_CASES.items():
        model = MLP()
        if order == "quantize-then-parallelize":
            quantize_(model, CONFIGS[config])
        parallelize_module(model, mesh, PLAN)
        if order == "parallelize-then-quantize":
            quantize_(model, CONFIGS[config])
        dcp.save(model.state_dict(), checkpoint_id=f"{out_path}.{name}.dcp")
    # the test-bed Llama, its attention and MLP projections sharded (heads split across the 2 ranks)
    from transformers import AutoModelForCausalLM

    from torchao.testbed import model_dir

    ids = torch.randint(0, 4096, (1, 24), generator=torch.Generator().manual_seed(0))
    for name, config in (("int4wo-g64", Int4WeightOnlyConfig(64)), ("int8wo", Int8WeightOnlyConfig())):
        reference, llama = (AutoModelForCausalLM.from_pretrained(model_dir()) for _ in range(2))
        for model in (reference, llama):
            quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn != "lm_head")
        parallelize_module(llama, mesh, LLAMA_PLAN)
        with torch.no_grad():
            a, b = reference(ids).logits, llama(ids).logits
            same_tokens = torch.equal(reference.generate(ids, max_new_tokens=8, do_sample=False),
                                      llama.generate(ids, max_new_tokens=8, do_sample=False))
        results[f"llama {name}"] = {"relative": relative(b, a), "same_tokens": same_tokens,
                                    "argmax": (a.argmax(-1) == b.argmax(-1)).float().mean().item()}
    # torch.compile of an int4 model sharded both ways (the only compile in this process: torch 2.13's
    # AOTAutogradCache does not key on the format of a DTensor's quantized local tensor, see the README)
    model = MLP()
    quantize_(model, Int4WeightOnlyConfig(32))
    parallelize_module(model, mesh, PLAN)
    with torch.no_grad():
        results["compiled"] = relative(full(torch.compile(model)(x)), full(model(x)))
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
