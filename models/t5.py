"""The T5 encoder (transformers ``T5EncoderModel``, T5 v1.1 as CogVideoX uses it) in Flax NNX.

Parameter paths are transformers' module paths (``shared``, ``encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}``,
``encoder.block.0.layer.0.SelfAttention.relative_attention_bias``, ``encoder.block.{i}.layer.{0,1}.layer_norm``,
``encoder.block.{i}.layer.1.DenseReluDense.{wi_0,wi_1,wo}`` (gated) or ``{wi,wo}``, ``encoder.final_layer_norm``),
so :func:`convert.fill.fill_module` loads a ``save_pretrained`` folder by name.

    encoder = load_t5_encoder("snapshot/text_encoder")   # ieadapt_jax.convert.cogvideox
    states = encoder(input_ids)                 # input_ids [B, L] int32 -> [B, L, d_model]

The facts that break parity if missed: attention logits are **not** scaled by 1/√d (scale 1.0); a
relative position bias (bidirectional buckets) is computed by block 0 only and reused by every block;
the norms are RMS norms without bias or mean subtraction (eps 1e-6); T5 v1.1's feed-forward is gated
with the tanh GELU ("gated-gelu" = gelu_new), the original T5's is relu. Self-attention goes through
:func:`ieadapt_jax.attend` with ``scale=1.0`` and the bias.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..core.attention import attend

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}


@dataclasses.dataclass(frozen=True)
class T5Config:
    """The fields of a transformers T5Config that the encoder uses (defaults are transformers')."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"

    def __post_init__(self):
        if self.dense_act_fn not in _ACTIVATIONS:
            raise ValueError(
                f"unsupported T5 feed_forward_proj {self.feed_forward_proj!r}; "
                f"supported: {', '.join(sorted(_ACTIVATIONS))}, each optionally 'gated-' prefixed"
            )

    @property
    def is_gated_act(self) -> bool:
        """True for T5 v1.1 ("gated-gelu"): wi_0 (activated) * wi_1, then wo."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self) -> str:
        """The activation name, as transformers resolves it ("gated-gelu" means gelu_new)."""
        name = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else name

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    @classmethod
    def from_dict(cls, config: dict) -> "T5Config":
        """From a config.json dict (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


def _linear(cin: int, cout: int, *, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(cin, cout, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)


def _rms_norm(features: int, eps: float, *, dtype, rngs: nnx.Rngs) -> nnx.RMSNorm:
    return nnx.RMSNorm(features, epsilon=eps, dtype=dtype, param_dtype=dtype, rngs=rngs)


def relative_position_buckets(query_length: int, key_length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """transformers' bidirectional ``_relative_position_bucket`` of (key − query) positions: [Lq, Lk] int32.

    Half the buckets take positive offsets; within each half, offsets below num_buckets/4 get their own
    bucket and larger ones share logarithmically wider buckets up to ``max_distance``.
    """
    relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]  # [Lq, Lk]
    half = num_buckets // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    max_exact = half // 2
    far = np.maximum(distance, max_exact).astype(np.float32)  # the log is only used where distance >= max_exact
    scaled = np.log(far / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    large = np.minimum(max_exact + scaled.astype(np.int64), half - 1)
    return (buckets + np.where(distance < max_exact, distance, large)).astype(np.int32)


class T5Attention(nnx.Module):
    """Self-attention with q/k/v/o (no biases, no 1/√d); block 0 also owns ``relative_attention_bias``."""

    def __init__(self, config: T5Config, *, has_relative_attention_bias: bool, dtype, rngs: nnx.Rngs):
        self.config = config
        d, inner = config.d_model, config.inner_dim
        self.q = _linear(d, inner, dtype=dtype, rngs=rngs)
        self.k = _linear(d, inner, dtype=dtype, rngs=rngs)
        self.v = _linear(d, inner, dtype=dtype, rngs=rngs)
        self.o = _linear(inner, d, dtype=dtype, rngs=rngs)
        self.relative_attention_bias = (
            nnx.Embed(config.relative_attention_num_buckets, config.num_heads, dtype=dtype, param_dtype=dtype, rngs=rngs)
            if has_relative_attention_bias
            else None
        )

    def position_bias(self, length: int) -> jax.Array:
        """[1, heads, L, L] the relative position bias of this (block-0) attention."""
        cfg = self.config
        buckets = relative_position_buckets(length, length, cfg.relative_attention_num_buckets,
                                            cfg.relative_attention_max_distance)
        values = self.relative_attention_bias(jnp.asarray(buckets))  # [L, L, heads]
        return values.transpose(2, 0, 1)[None]  # [1, heads, L, L]

    def __call__(self, x: jax.Array, bias: jax.Array, backend: str) -> jax.Array:
        """x [B, L, d_model], bias broadcastable to [B, heads, L, L] -> [B, L, d_model]."""
        B, L, _ = x.shape
        heads = (B, L, self.config.num_heads, self.config.d_kv)
        q = self.q(x).reshape(heads)  # [B, L, H, Dkv]
        k = self.k(x).reshape(heads)
        v = self.v(x).reshape(heads)
        out, _ = attend(q, k, v, bias=bias, scale=1.0, backend=backend)
        return self.o(out.reshape(B, L, self.config.inner_dim))  # [B, L, H, Dkv] -> [B, L, H·Dkv]


class T5LayerSelfAttention(nnx.Module):
    """x + SelfAttention(layer_norm(x))."""

    def __init__(self, config: T5Config, *, has_relative_attention_bias: bool, dtype, rngs: nnx.Rngs):
        self.SelfAttention = T5Attention(config, has_relative_attention_bias=has_relative_attention_bias,
                                         dtype=dtype, rngs=rngs)
        self.layer_norm = _rms_norm(config.d_model, config.layer_norm_epsilon, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array, backend: str) -> jax.Array:
        return x + self.SelfAttention(self.layer_norm(x), bias, backend)


class T5DenseActDense(nnx.Module):
    """wi -> activation -> wo (the original T5)."""

    def __init__(self, config: T5Config, *, dtype, rngs: nnx.Rngs):
        self.activation = _ACTIVATIONS[config.dense_act_fn]
        self.wi = _linear(config.d_model, config.d_ff, dtype=dtype, rngs=rngs)
        self.wo = _linear(config.d_ff, config.d_model, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.wo(self.activation(self.wi(x)))


class T5DenseGatedActDense(nnx.Module):
    """activation(wi_0 x) * wi_1 x -> wo (T5 v1.1)."""

    def __init__(self, config: T5Config, *, dtype, rngs: nnx.Rngs):
        self.activation = _ACTIVATIONS[config.dense_act_fn]
        self.wi_0 = _linear(config.d_model, config.d_ff, dtype=dtype, rngs=rngs)
        self.wi_1 = _linear(config.d_model, config.d_ff, dtype=dtype, rngs=rngs)
        self.wo = _linear(config.d_ff, config.d_model, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.wo(self.activation(self.wi_0(x)) * self.wi_1(x))


class T5LayerFF(nnx.Module):
    """x + DenseReluDense(layer_norm(x))."""

    def __init__(self, config: T5Config, *, dtype, rngs: nnx.Rngs):
        dense = T5DenseGatedActDense if config.is_gated_act else T5DenseActDense
        self.DenseReluDense = dense(config, dtype=dtype, rngs=rngs)
        self.layer_norm = _rms_norm(config.d_model, config.layer_norm_epsilon, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nnx.Module):
    """``layer.0`` self-attention, ``layer.1`` feed-forward; float16 activations are clamped as transformers does."""

    def __init__(self, config: T5Config, *, has_relative_attention_bias: bool, dtype, rngs: nnx.Rngs):
        self.layer = nnx.List([
            T5LayerSelfAttention(config, has_relative_attention_bias=has_relative_attention_bias, dtype=dtype, rngs=rngs),
            T5LayerFF(config, dtype=dtype, rngs=rngs),
        ])

    def __call__(self, x: jax.Array, bias: jax.Array, backend: str) -> jax.Array:
        x = _clamp_fp16(self.layer[0](x, bias, backend))
        return _clamp_fp16(self.layer[1](x))


def _clamp_fp16(x: jax.Array) -> jax.Array:
    """transformers keeps float16 T5 activations finite by clamping to the largest finite value (− 1000 if any is inf)."""
    if x.dtype != jnp.float16:
        return x
    top = jnp.finfo(jnp.float16).max
    limit = jnp.where(jnp.isinf(x).any(), top - 1000, top).astype(x.dtype)
    return jnp.clip(x, -limit, limit)


class T5Stack(nnx.Module):
    """``block`` (block 0 owns the relative position bias) and ``final_layer_norm``."""

    def __init__(self, config: T5Config, *, dtype, rngs: nnx.Rngs):
        self.block = nnx.List([
            T5Block(config, has_relative_attention_bias=i == 0, dtype=dtype, rngs=rngs) for i in range(config.num_layers)
        ])
        self.final_layer_norm = _rms_norm(config.d_model, config.layer_norm_epsilon, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, mask_bias: jax.Array | None, backend: str) -> jax.Array:
        bias = self.block[0].layer[0].SelfAttention.position_bias(x.shape[1]).astype(jnp.float32)  # [1, H, L, L]
        if mask_bias is not None:
            bias = bias + mask_bias  # [B, H, L, L]
        for block in self.block:
            x = block(x, bias, backend)
        return self.final_layer_norm(x)


class T5EncoderModel(nnx.Module):
    """transformers ``T5EncoderModel``: ``shared`` token embedding, then the encoder stack."""

    def __init__(self, config: T5Config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.shared = nnx.Embed(config.vocab_size, config.d_model, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.encoder = T5Stack(config, dtype=dtype, rngs=rngs)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None, *, backend: str = "auto") -> jax.Array:
        """Encode token ids: input_ids [B, L] -> last hidden state [B, L, d_model].

        attention_mask: optional [B, L], 1 for tokens to attend to, 0 for padding (CogVideoX passes none).
        """
        if getattr(input_ids, "ndim", None) != 2:
            raise ValueError(f"input_ids must be [B, L], got shape {list(getattr(input_ids, 'shape', ()))}")
        mask_bias = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask {list(attention_mask.shape)} must match input_ids {list(input_ids.shape)}")
            neg = jnp.finfo(jnp.float32).min
            mask_bias = jnp.where(attention_mask.astype(bool), 0.0, neg)[:, None, None, :]  # [B, 1, 1, L]
        return self.encoder(self.shared(input_ids), mask_bias, backend)

    def prompt_embeds(self, input_ids: jax.Array, clip_skip: int | None = None, *, backend: str = "auto") -> jax.Array:
        """[B, L, d_model] text conditioning as diffusers' CogVideoXPipeline computes it: the last hidden
        state of the unmasked encoder. ``clip_skip`` exists for the pipeline's uniform call and must be None."""
        if clip_skip is not None:
            raise ValueError(f"clip_skip={clip_skip} applies to CLIP text encoders only; the T5 encoder takes None")
        return self(input_ids, backend=backend)
