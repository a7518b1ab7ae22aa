"""A minimal Llama (gpt-fast style) with a static KV cache, loading transformers Llama checkpoints.

Why our own module rather than transformers' generate: a fixed-shape decode step (one token, a
preallocated cache written with index_copy_) compiles into one graph with no recompilation per token,
and every Linear keeps the transformers name, so torchao's quantize_, GPTQ and AutoRound apply unchanged.
Without ``setup_caches`` the model runs plain causal attention (calibration, perplexity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaArgs:
    vocab_size: int = 32000
    hidden_size: int = 2048
    intermediate_size: int = 5632
    num_hidden_layers: int = 16
    num_attention_heads: int = 32
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048

    @classmethod
    def from_hf_config(cls, path: Path) -> "LlamaArgs":
        cfg = json.loads((Path(path) / "config.json").read_text())
        rope = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
        fields = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        return cls(**{**fields, "rope_theta": rope})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class KVCache(nn.Module):
    def __init__(self, batch: int, heads: int, max_seq: int, head_dim: int, dtype):
        super().__init__()
        self.register_buffer("k", torch.zeros(batch, heads, max_seq, head_dim, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(batch, heads, max_seq, head_dim, dtype=dtype), persistent=False)

    def update(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        self.k.index_copy_(2, pos, k)
        self.v.index_copy_(2, pos, v)
        return self.k, self.v


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def _cached_attention(q, k, v, mask):
    """Attention of q (B, H, S, D) over the whole static cache k, v (B, KV, T, D) with a boolean mask
    (1, 1, S, T), written as two batched matmuls and a softmax: the KV heads' query groups share one matmul
    (no repeated K / V), and Inductor fuses the scaling, masking and softmax. At decode (S = 1, T a few
    hundred) this is ~6x faster on CPU than aten's flash-attention kernel, whose per-call setup dominates."""
    b, h, s, d = q.shape
    kv = k.shape[1]
    grouped = q.reshape(b, kv, h // kv * s, d)
    scores = (grouped @ k.transpose(-1, -2)).float() * d ** -0.5  # (B, KV, H / KV * S, T)
    scores = scores.reshape(b, kv, h // kv, s, -1).masked_fill(~mask.unsqueeze(2), float("-inf"))
    probs = scores.softmax(-1).to(v.dtype).reshape(b, kv, h // kv * s, -1)
    return (probs @ v).reshape(b, h, s, d)


class Attention(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = a.num_attention_heads, a.num_key_value_heads, a.head_dim
        self.q_proj = nn.Linear(a.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(a.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(a.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, a.hidden_size, bias=False)
        self.kv_cache: Optional[KVCache] = None

    def forward(self, x, cos, sin, pos, mask):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if mask is not None:  # decoding with the static cache
            k, v = self.kv_cache.update(pos, k, v)
            out = _cached_attention(q, k, v, mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=False)
        self.up_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=False)
        self.down_proj = nn.Linear(a.intermediate_size, a.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.self_attn, self.mlp = Attention(a), MLP(a)
        self.input_layernorm = nn.RMSNorm(a.hidden_size, eps=a.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(a.hidden_size, eps=a.rms_norm_eps)

    def forward(self, x, cos, sin, pos, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, pos, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab_size, a.hidden_size)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.num_hidden_layers))
        self.norm = nn.RMSNorm(a.hidden_size, eps=a.rms_norm_eps)


class Llama(nn.Module):
    """forward(input_ids (B, S) int64, input_pos (S,) int64 or None) -> logits (B, S, vocab) float."""

    def __init__(self, a: LlamaArgs):
        super().__init__()
        self.args = a
        self.model = Inner(a)
        self.lm_head = nn.Linear(a.hidden_size, a.vocab_size, bias=False)
        inv = 1.0 / (a.rope_theta ** (torch.arange(0, a.head_dim, 2, dtype=torch.float32) / a.head_dim))
        freqs = torch.outer(torch.arange(a.max_position_embeddings, dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.max_seq = 0

    @classmethod
    def from_pretrained(cls, path, dtype=torch.bfloat16) -> "Llama":
        from safetensors.torch import load_file

        model = cls(LlamaArgs.from_hf_config(path))
        state = load_file(str(Path(path) / "model.safetensors"))
        model.load_state_dict(state, strict=False)
        missing = set(model.state_dict()) - set(state)
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {sorted(missing)[:4]}")
        return model.to(dtype).eval()

    def parallelize(self, mesh, exact: bool = False) -> None:
        """Tensor parallelism over ``mesh`` (1-D): q/k/v, gate/up and lm_head split by output channels (each
        process keeps its heads and its KV cache of them), o_proj and down_proj by input channels with their
        partial sums all-reduced, lm_head's logits gathered. Works before or after quantize_.

        ``exact``: o_proj and down_proj split by output channels too (their inputs gathered first), so no
        partial sums are added in bf16 and every logit equals the single process's, at the cost of two
        all-gathers where one all-reduce was."""
        from torch.distributed.tensor import Replicate, Shard
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        n = mesh.size()
        if self.args.num_key_value_heads % n:
            raise ValueError(f"{self.args.num_key_value_heads} KV heads cannot be split over {n} processes")
        gathered = ColwiseParallel(input_layouts=Shard(-1), output_layouts=Replicate())
        reducing = gathered if exact else RowwiseParallel()
        plan = {"lm_head": ColwiseParallel(output_layouts=Replicate())}
        for i in range(self.args.num_hidden_layers):
            plan.update({f"model.layers.{i}.{name}": style for name, style in (
                ("self_attn.q_proj", ColwiseParallel()), ("self_attn.k_proj", ColwiseParallel()),
                ("self_attn.v_proj", ColwiseParallel()), ("self_attn.o_proj", reducing),
                ("mlp.gate_proj", ColwiseParallel()), ("mlp.up_proj", ColwiseParallel()),
                ("mlp.down_proj", reducing))})
        parallelize_module(self, mesh, plan)
        for block in self.model.layers:
            block.self_attn.heads //= n
            block.self_attn.kv_heads //= n

    def setup_caches(self, batch: int, max_seq: int) -> None:
        """Static caches for ``batch`` sequences of up to ``max_seq`` tokens; the same shapes reuse (zeroed)
        buffers, so a compiled decode step keeps its graph across generations."""
        dtype = self.lm_head.weight.dtype
        cache = self.model.layers[0].self_attn.kv_cache
        if cache is not None and cache.k.shape[0] == batch and cache.k.shape[2] == max_seq and cache.k.dtype == dtype:
            for block in self.model.layers:
                block.self_attn.kv_cache.k.zero_()
                block.self_attn.kv_cache.v.zero_()
            return
        for block in self.model.layers:
            block.self_attn.kv_cache = KVCache(batch, block.self_attn.kv_heads, max_seq, self.args.head_dim,
                                               dtype).to(self.cos.device)
        self.max_seq = max_seq
        causal = torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool, device=self.cos.device))
        self.register_buffer("causal", causal, persistent=False)

    def forward(self, input_ids: torch.Tensor, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        s = input_ids.shape[1]
        pos = torch.arange(s, device=input_ids.device) if input_pos is None else input_pos
        dtype = self.model.embed_tokens.weight.dtype
        cos, sin = self.cos[pos].to(dtype), self.sin[pos].to(dtype)
        mask = self.causal[pos].unsqueeze(0).unsqueeze(0) if (self.max_seq and input_pos is not None) else None
        x = self.model.embed_tokens(input_ids)
        for block in self.model.layers:
            x = block(x, cos, sin, pos, mask)
        return self.lm_head(self.model.norm(x))
