"""GGUF files for llama.cpp, written with the ``gguf`` package, from a quantized transformers Llama.

Each quantized Linear goes in as the GGUF type that holds its values exactly, blocks of 32 along K:

* Q4_0 (x = d * (u - 8), fp16 d): our ``q4_0`` layout's bytes as they are, or symmetric 4-bit weights
  (range [-8, 7]) in groups of 32;
* Q4_1 (x = d * u + m, fp16 d and m): asymmetric 4-bit weights in groups of 32, integer or float zero point,
  when d and m are exact in float16;
* Q8_0 (x = d * q, fp16 d): symmetric int8 weights in groups of 32.

A scale or offset that float16 cannot hold exactly, another group size or bit width, is refused
(UnsupportedExport naming the layer): nothing is re-rounded. Float tensors keep their dtype (norms float32).
q_proj / k_proj rows are reordered as llama.cpp's rotary embedding expects (pairs interleaved per head).
Metadata: the ``llama.*`` keys from the model config; the tokenizer (byte-level BPE as ``gpt2``) from a
transformers fast tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn as nn

from torchao.io.integer_codes import UnsupportedExport
from torchao.qtensor import AffineQuantizedTensor, ZeroPointDomain

__all__ = ["save_gguf", "GGUF_NAME"]

GGUF_NAME = "model.gguf"
BLOCK = 32


def _fp16_exact(name: str, what: str, values: torch.Tensor) -> torch.Tensor:
    """``values`` (float32) as float16, refusing if any changes."""
    half = values.to(torch.float16)
    if not torch.equal(half.to(torch.float32), values):
        worst = (half.to(torch.float32) - values).abs().max().item()
        raise UnsupportedExport(f"{name}: its {what} are not exact in float16 (GGUF stores them so; the largest "
                                f"would change by {worst:.3g}); quantize with Q4_0Config() or "
                                "IntxWeightOnlyConfig(4, 32, sym=True) for an exact Q4_0")
    return half


def _nibble_blocks(u: torch.Tensor) -> torch.Tensor:
    """(N, K) codes 0..15 -> (N, K/32, 16) bytes: byte j = u[j] | u[j + 16] << 4 within each block."""
    blocks = u.to(torch.uint8).reshape(u.shape[0], -1, BLOCK)
    return blocks[..., :16] | (blocks[..., 16:] << 4)


def _with_header(halves, payload: torch.Tensor) -> np.ndarray:
    """Per block: the float16 header values, then the payload bytes; as (N, K/32 * block bytes) uint8."""
    parts = [h.reshape(payload.shape[0], payload.shape[1], 1).view(torch.uint8) for h in halves] + [payload.view(torch.uint8)]
    rows = torch.cat([p.reshape(payload.shape[0], payload.shape[1], -1) for p in parts], dim=-1)
    return rows.reshape(payload.shape[0], -1).contiguous().numpy()


def _plain(name: str, weight: AffineQuantizedTensor):
    int_data, scale, zero_point = weight.get_plain()
    n = weight.shape[0]
    return int_data.to(torch.int32), scale.reshape(n, -1).to(torch.float32), zero_point


def _q4_0(name: str, weight: AffineQuantizedTensor) -> np.ndarray:
    if weight.spec.layout == "q4_0":
        return weight.blocks.reshape(weight.shape[0], -1).contiguous().numpy()
    q, scale, _ = _plain(name, weight)
    return _with_header([_fp16_exact(name, "scales", scale)], _nibble_blocks(q + 8))


def _q4_1(name: str, weight: AffineQuantizedTensor) -> np.ndarray:
    q, scale, zero_point = _plain(name, weight)
    zero = zero_point.reshape(scale.shape).to(torch.float32)
    # x = (u - z) * s  (integer z)   or   (u - mid) * s + z  (float z, mid = 8): as d * u + m
    offset = -zero * scale if weight.spec.zero_point_domain == ZeroPointDomain.INT else zero - weight.spec.mid * scale
    return _with_header([_fp16_exact(name, "scales", scale), _fp16_exact(name, "offsets", offset)], _nibble_blocks(q))


def _q8_0(name: str, weight: AffineQuantizedTensor) -> np.ndarray:
    q, scale, _ = _plain(name, weight)
    payload = q.to(torch.int8).reshape(q.shape[0], -1, BLOCK)
    return _with_header([_fp16_exact(name, "scales", scale)], payload)


def _gguf_type(name: str, spec) -> tuple:
    """(GGMLQuantizationType name, encoder) for a quantized weight, or UnsupportedExport."""
    rng, domain = (spec.quant_min, spec.quant_max), spec.zero_point_domain
    if spec.block_size != (1, BLOCK) or spec.act_quant is not None or spec.transposed:
        raise UnsupportedExport(f"{name} {tuple(spec.shape)}: GGUF's Q4_0 / Q4_1 / Q8_0 hold weight-only blocks of 32 "
                                f"along K; this weight has block_size {spec.block_size}, activation quantization "
                                f"{spec.act_quant!r}")
    table = {
        ((-8, 7), ZeroPointDomain.NONE): ("Q4_0", _q4_0),
        ((0, 15), ZeroPointDomain.INT): ("Q4_1", _q4_1),
        ((0, 15), ZeroPointDomain.FLOAT): ("Q4_1", _q4_1),
        ((-128, 127), ZeroPointDomain.NONE): ("Q8_0", _q8_0),
        ((-127, 127), ZeroPointDomain.NONE): ("Q8_0", _q8_0),
    }
    if (rng, domain) not in table:
        raise UnsupportedExport(f"{name} {tuple(spec.shape)}: range {list(rng)} with zero point {domain.name} is none of "
                                "GGUF's Q4_0 (symmetric 4-bit), Q4_1 (asymmetric 4-bit), Q8_0 (symmetric 8-bit)")
    return table[(rng, domain)]


def _rope_rows(rows: int, heads: int) -> torch.Tensor:
    """The row order llama.cpp wants for q_proj / k_proj: per head, the two rotary halves interleaved."""
    return torch.arange(rows).reshape(heads, 2, rows // heads // 2).transpose(1, 2).reshape(rows)


def _tokenizer_metadata(tokenizer) -> list:
    """[(GGUFWriter method, value)] describing a byte-level BPE transformers tokenizer."""
    import gguf

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    model = data["model"]
    if model.get("type") != "BPE" or (data.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise UnsupportedExport("GGUF export writes byte-level BPE tokenizers (GPT-2 style); this one is "
                                f"{model.get('type')} with pre-tokenizer {(data.get('pre_tokenizer') or {}).get('type')}")
    vocab = dict(model["vocab"])
    vocab.update({added["content"]: added["id"] for added in data.get("added_tokens", [])})
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {a["id"] for a in data.get("added_tokens", []) if a.get("special")}
    entries = [("add_tokenizer_model", "gpt2"), ("add_tokenizer_pre", "default"), ("add_token_list", tokens),
               ("add_token_types", [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
                                    for i in range(len(tokens))]),
               ("add_token_merges", [m if isinstance(m, str) else " ".join(m) for m in model["merges"]])]
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, key, None) is not None:
            entries.append((f"add_{key}", getattr(tokenizer, key)))
    return entries


def _llama_metadata(writer, config) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_vocab_size(config.vocab_size)


def _float_array(value: torch.Tensor) -> tuple:
    """(array, raw GGML type or None): 1-D tensors (norms) as float32; others as float16 / float32, bfloat16
    as its bytes (GGUF BF16)."""
    import gguf

    if value.dim() == 1 or value.dtype == torch.float32:
        return value.to(torch.float32).numpy(), None
    if value.dtype == torch.bfloat16:
        return value.contiguous().view(torch.uint8).numpy(), gguf.GGMLQuantizationType.BF16
    return value.to(torch.float16).numpy(), None


def save_gguf(model: nn.Module, directory: Path, tokenizer=None) -> Path:
    """Write ``directory / model.gguf`` for a transformers Llama (see the module docstring). Every tensor is
    checked before the file is opened; ``tokenizer``: a transformers fast tokenizer (needed by llama.cpp)."""
    import gguf

    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        raise UnsupportedExport(f"GGUF export handles transformers Llama models; this is "
                                f"{getattr(config, 'model_type', type(model).__name__)!r}")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    tensors: Dict[str, tuple] = {}
    for name, value in model.state_dict().items():
        if getattr(config, "tie_word_embeddings", False) and name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise UnsupportedExport(f"{name}: no GGUF tensor name for it in the llama architecture")
        module = name.rsplit(".", 2)[-2]
        order: Optional[torch.Tensor] = _rope_rows(value.shape[0], heads[module]) if module in heads else None
        if isinstance(value, AffineQuantizedTensor):
            kind, encode = _gguf_type(name, value.spec)
            data = encode(name, value.detach().cpu())
            tensors[target] = (data[order.numpy()] if order is not None else data, getattr(gguf.GGMLQuantizationType, kind))
        else:
            value = value.detach().cpu()
            data, raw = _float_array(value[order] if order is not None else value)
            tensors[target] = (np.ascontiguousarray(data), raw)
    vocabulary = _tokenizer_metadata(tokenizer) if tokenizer is not None else []
    path = Path(directory) / GGUF_NAME
    writer = gguf.GGUFWriter(str(path), "llama")
    _llama_metadata(writer, config)
    for method, value in vocabulary:
        getattr(writer, method)(value)
    for target, (data, raw) in tensors.items():
        writer.add_tensor(target, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
