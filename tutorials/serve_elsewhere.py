"""Tutorial: quantize with GPTQ here, serve anywhere: export to the formats other engines load, and check each
export with that format's own reader.

    python tutorials/serve_elsewhere.py [--fast] [--model DIR]

1. GPTQ, 4-bit, groups of 32, on the test bed (or --model DIR);
2. ``save_quantized(model, dir, format=...)`` for ``auto_round`` (auto-round / vLLM / SGLang),
   ``gptq`` (GPTQ v1: vLLM, SGLang, TGI, GPTQModel), ``compressed_tensors`` (vLLM, transformers);
   ``gguf`` (llama.cpp) takes round-to-nearest Q4_0 here, GGUF having no integer zero point;
3. each directory read back by the format's own reader where one installs on CPU: transformers with
   auto-round, compressed-tensors' decompressor, gguf's reader; and by ``torchao.load_quantized``, which
   rebuilds our quantized tensors (the same logits as before the export).

--fast: fewer calibration windows (what CI runs).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import torchao
from torchao.quantization import Q4_0Config, gptq, quantize_
from torchao.testbed import calibration_text, heldout_text, model_dir


def block_linears(module, fqn):
    return isinstance(module, torch.nn.Linear) and fqn != "lm_head"


def agreement(a: torch.Tensor, b: torch.Tensor) -> str:
    return (f"argmax agreement {(a.argmax(-1) == b.argmax(-1)).float().mean().item():.3f}, "
            f"relative difference {((a - b).norm() / b.norm()).item():.4f}")


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits.float()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--model", default=str(model_dir()))
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    ids = tokenizer(heldout_text()[:3000], return_tensors="pt").input_ids[:, :128]

    # 1. GPTQ with an integer zero point: what the engines' 4-bit formats hold
    model = AutoModelForCausalLM.from_pretrained(args.model)
    quantize_(model, gptq([calibration_text()], tokenizer=tokenizer, bits=4, group_size=32,
                          n_samples=8 if args.fast else 64, seqlen=128, progress=False), filter_fn=block_linears)
    ours = logits(model, ids)

    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("auto_round", "gptq", "compressed_tensors"):
            out = torchao.save_quantized(model, Path(tmp) / fmt, tokenizer=tokenizer, format=fmt)
            mb = sum(f.stat().st_size for f in out.glob("*.safetensors")) / 2**20
            back = torchao.load_quantized(out)
            print(f"{fmt:18s} {mb:5.1f} MB; torchao.load_quantized: logits identical {torch.equal(logits(back, ids), ours)}")

        # 3. the other side's readers
        theirs = AutoModelForCausalLM.from_pretrained(Path(tmp) / "auto_round")  # auto-round's QuantLinear
        print(f"auto-round's loader ({type(theirs.model.layers[0].mlp.up_proj).__module__}): "
              f"{agreement(logits(theirs, ids), ours)}")
        check_compressed_tensors(Path(tmp) / "compressed_tensors", model)

        # 2b. GGUF: round-to-nearest Q4_0 (GGUF stores float16 scales and no integer zero point)
        q4 = AutoModelForCausalLM.from_pretrained(args.model)
        quantize_(q4, Q4_0Config(), filter_fn=block_linears)
        path = torchao.save_quantized(q4, Path(tmp) / "gguf", tokenizer=tokenizer, format="gguf") / "model.gguf"
        check_gguf(path, q4)
    return 0


def check_compressed_tensors(directory: Path, model) -> None:
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory).quantization_config
    scheme = QuantizationScheme(**config["config_groups"]["group_0"])
    compressor = BaseCompressor.load_from_registry(config["format"])
    stored = load_file(str(directory / "model.safetensors"))
    layer = "model.layers.0.mlp.down_proj"
    local = {k[len(layer) + 1:]: v for k, v in stored.items() if k.startswith(layer + ".")}
    same = torch.equal(compressor.decompress(local, scheme)["weight"], model.get_submodule(layer).weight.dequantize())
    print(f"compressed-tensors' {config['format']} decompressor on {layer}: our weights exactly: {same}")


def check_gguf(path: Path, model) -> None:
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    stored = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    theirs = gguf.quants.dequantize(stored.data, stored.tensor_type)
    ours = model.model.layers[0].mlp.down_proj.weight.dequantize(torch.float32).numpy()
    print(f"gguf {path.stat().st_size / 2**20:.1f} MB; gguf's reader on blk.0.ffn_down ({stored.tensor_type.name}): "
          f"our weights exactly: {np.array_equal(theirs, ours)}")


if __name__ == "__main__":
    sys.exit(main())
