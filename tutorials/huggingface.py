"""Tutorial: torchao through Hugging Face transformers: quantize on load, save_pretrained, from_pretrained.

    python tutorials/huggingface.py [--fast] [--model DIR]

1. ``from_pretrained(..., quantization_config=TorchAoConfig(Int4WeightOnlyConfig(group_size=64)))``:
   transformers quantizes each Linear of the blocks as it loads (lm_head stays in float);
2. ``save_pretrained``: the quantized weights go to safetensors (packed integers, scales, zero points and
   their metadata), config.json records the quantization;
3. plain ``from_pretrained(dir)`` loads it back, quantized, bit-identical, and it compiles;
4. our own ``quantize_`` (here a config per layer with FqnToConfig; GPTQ or AutoRound work the same way)
   on a loaded model, then ``save_pretrained``: the same format.

--model: any local causal LM directory (default: the test bed that ships with torchao). --fast: shorter
generation and a smaller compiled check (what CI runs).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

from torchao.quantization import FqnToConfig, Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
from torchao.testbed import model_dir


def directory_mb(directory: Path) -> float:
    return sum(f.stat().st_size for f in Path(directory).glob("*.safetensors")) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--model", default=str(model_dir()))
    args = parser.parse_args(argv)
    new_tokens = 8 if args.fast else 40
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prompt = tokenizer("def fibonacci(n):", return_tensors="pt").input_ids

    # 1. quantize on load
    config = TorchAoConfig(Int4WeightOnlyConfig(group_size=64))
    model = AutoModelForCausalLM.from_pretrained(args.model, quantization_config=config)
    print(f"q_proj weight after loading: {model.model.layers[0].self_attn.q_proj.weight!r}")
    completion = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False)
    print("int4 completion:", repr(tokenizer.decode(completion[0])))

    with tempfile.TemporaryDirectory() as tmp:
        # 2. save: a normal save_pretrained directory
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        print(f"checkpoint: {directory_mb(args.model):.1f} MB float -> {directory_mb(tmp):.1f} MB int4 "
              f"({sorted(p.name for p in Path(tmp).iterdir())})")

        # 3. load it back: no quantization_config needed, config.json has it
        reloaded = AutoModelForCausalLM.from_pretrained(tmp)
        with torch.no_grad():
            same = torch.equal(reloaded(prompt).logits, model(prompt).logits)
            compiled_same = torch.equal(torch.compile(reloaded)(prompt).logits, torch.compile(model)(prompt).logits)
        print(f"reloaded logits bit-identical: {same}; compiled: {compiled_same}")
        assert same and compiled_same

    # 4. our own quantize_ on a loaded model, then save_pretrained
    model = AutoModelForCausalLM.from_pretrained(args.model)
    quantize_(model, FqnToConfig({"re:.*\\.mlp\\..*": Int4WeightOnlyConfig(group_size=64),
                                  "lm_head": None, "_default": Int8WeightOnlyConfig()}))
    print(f"recorded in the config: {type(model.config.quantization_config).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp)
        with torch.no_grad():
            same = torch.equal(reloaded(prompt).logits, model(prompt).logits)
        print(f"mixed int4 MLP / int8 attention: {directory_mb(tmp):.1f} MB, reloaded bit-identical: {same}")
        assert same
    return 0


if __name__ == "__main__":
    sys.exit(main())
