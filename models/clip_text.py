"""The CLIP text encoder (transformers ``CLIPTextModel``) in Flax NNX.

Parameter paths are transformers' in-memory module paths (``embeddings.token_embedding``,
``encoder.layers.{i}.self_attn.{q,k,v,out}_proj``, ``layer_norm{1,2}``, ``mlp.fc{1,2}``,
``final_layer_norm``), so :func:`convert.fill.fill_module` loads a ``save_pretrained`` folder by
name; the ``text_model.`` prefix that checkpoints on disk carry is accepted too.

    encoder = load_clip_text("snapshot/text_encoder")   # ieadapt_jax.convert.folders
    out = encoder(input_ids)                 # input_ids [B, L] int32
    out.last_hidden_state                    # [B, L, D], after final_layer_norm
    out.pooler_output                        # [B, D], the EOS token's state
    out.hidden_states[-2]                    # [B, L, D], the penultimate layer (before final_layer_norm)
    encoder.prompt_embeds(input_ids, clip_skip=1)   # [B, L, D], diffusers' clip_skip conditioning

Self-attention is causal and goes through :func:`ieadapt_jax.attend` (``causal=True``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ..core.attention import attend

CLIP_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}
# The pre-#24773 transformers configs used eos_token_id=2; their pooled token is the highest id.
_LEGACY_EOS_TOKEN_ID = 2


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    """The fields of a transformers CLIPTextConfig that the forward pass uses."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int | tuple[int, ...] = 49407

    def __post_init__(self):
        if self.hidden_act not in CLIP_ACTIVATIONS:
            raise ValueError(f"unsupported CLIP hidden_act {self.hidden_act!r}; supported: {', '.join(CLIP_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, config: dict) -> "CLIPTextConfig":
        """From a config.json dict: a CLIPTextConfig, or a CLIPConfig (its ``text_config`` is used)."""
        config = config.get("text_config", config)
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in config.items() if k in names}
        eos = kwargs.get("eos_token_id")
        if isinstance(eos, list):
            kwargs["eos_token_id"] = tuple(eos)
        return cls(**kwargs)


class CLIPTextOutput(NamedTuple):
    """last_hidden_state [B, L, D] (after final_layer_norm); pooler_output [B, D] (EOS token);
    hidden_states: num_hidden_layers + 1 arrays [B, L, D]: the embeddings, then each layer's output
    (without final_layer_norm), as transformers' ``output_hidden_states=True``."""

    last_hidden_state: jax.Array
    pooler_output: jax.Array
    hidden_states: tuple[jax.Array, ...]


class CLIPTextEmbeddings(nnx.Module):
    """Token plus learned absolute position embeddings."""

    def __init__(self, config: CLIPTextConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.token_embedding = nnx.Embed(config.vocab_size, config.hidden_size, **kw)
        self.position_embedding = nnx.Embed(config.max_position_embeddings, config.hidden_size, **kw)

    def __call__(self, input_ids: jax.Array, position_ids: jax.Array | None = None) -> jax.Array:
        """input_ids [B, L] -> [B, L, D]."""
        length = input_ids.shape[-1]
        max_length = self.position_embedding.num_embeddings
        if length > max_length:
            raise ValueError(f"sequence length {length} exceeds max_position_embeddings {max_length}")
        if position_ids is None:
            position_ids = jnp.arange(length)[None, :]  # [1, L]
        return self.token_embedding(input_ids) + self.position_embedding(position_ids)


class CLIPAttention(nnx.Module):
    """Multi-head self-attention with q/k/v/out projections (all with bias); causal for the text tower,
    not for the vision tower (``causal=False``, :mod:`models.clip_vision`)."""

    def __init__(self, config: CLIPTextConfig, *, causal: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_heads = config.num_attention_heads
        self.causal = causal
        dim = config.hidden_size
        kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.q_proj = nnx.Linear(dim, dim, **kw)
        self.k_proj = nnx.Linear(dim, dim, **kw)
        self.v_proj = nnx.Linear(dim, dim, **kw)
        self.out_proj = nnx.Linear(dim, dim, **kw)

    def __call__(self, x: jax.Array, bias: jax.Array | None = None, backend: str = "auto") -> jax.Array:
        """x [B, L, D] -> [B, L, D]; causal (unless built with causal=False), plus an optional additive
        key bias [B, 1, 1, L]."""
        B, L, D = x.shape
        heads = (B, L, self.num_heads, D // self.num_heads)
        q = self.q_proj(x).reshape(heads)  # [B, L, H, Dh]
        k = self.k_proj(x).reshape(heads)
        v = self.v_proj(x).reshape(heads)
        out, _ = attend(q, k, v, causal=self.causal, bias=bias, backend=backend)
        return self.out_proj(out.reshape(B, L, D))  # [B, L, H, Dh] -> [B, L, D]


class CLIPMLP(nnx.Module):
    """fc1 -> activation (quick_gelu / gelu per config) -> fc2."""

    def __init__(self, config: CLIPTextConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.activation = CLIP_ACTIVATIONS[config.hidden_act]
        self.fc1 = nnx.Linear(config.hidden_size, config.intermediate_size, **kw)
        self.fc2 = nnx.Linear(config.intermediate_size, config.hidden_size, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.activation(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
    """Pre-norm transformer layer: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config: CLIPTextConfig, *, causal: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.self_attn = CLIPAttention(config, causal=causal, dtype=dtype, rngs=rngs)
        self.layer_norm1 = nnx.LayerNorm(config.hidden_size, **kw)
        self.mlp = CLIPMLP(config, dtype=dtype, rngs=rngs)
        self.layer_norm2 = nnx.LayerNorm(config.hidden_size, **kw)

    def __call__(self, x: jax.Array, bias: jax.Array | None = None, backend: str = "auto") -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x), bias, backend)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
    """The stack of encoder layers (``encoder.layers.{i}``)."""

    def __init__(self, config: CLIPTextConfig, *, causal: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [CLIPEncoderLayer(config, causal=causal, dtype=dtype, rngs=rngs) for _ in range(config.num_hidden_layers)]
        )

    def __call__(self, x: jax.Array, bias: jax.Array | None = None, backend: str = "auto") -> tuple[jax.Array, ...]:
        """x [B, L, D] -> (x, each layer's output): num_layers + 1 arrays [B, L, D]."""
        states = [x]
        for layer in self.layers:
            states.append(layer(states[-1], bias, backend))
        return tuple(states)


class CLIPTextModel(nnx.Module):
    """transformers ``CLIPTextModel``: embeddings, causal encoder, final LayerNorm, EOS pooling."""

    def __init__(self, config: CLIPTextConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = CLIPTextEmbeddings(config, dtype=dtype, rngs=rngs)
        self.encoder = CLIPEncoder(config, dtype=dtype, rngs=rngs)
        self.final_layer_norm = nnx.LayerNorm(
            config.hidden_size, epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=dtype, rngs=rngs
        )

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        *,
        backend: str = "auto",
    ) -> CLIPTextOutput:
        """Encode token ids.

        Args:
          input_ids: [B, L] integer token ids (L <= max_position_embeddings).
          attention_mask: optional [B, L], 1 for tokens to attend to and 0 for padding, applied on top
            of the causal mask (Stable Diffusion pipelines pass none).
          position_ids: optional [B, L] or [1, L]; default 0..L-1.
          backend: attention backend for :func:`ieadapt_jax.attend`.

        Returns:
          :class:`CLIPTextOutput` (last hidden state, pooled EOS state, all hidden states).
        """
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, L], got shape {list(input_ids.shape)}")
        x = self.embeddings(input_ids, position_ids)
        bias = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask {list(attention_mask.shape)} must match input_ids {list(input_ids.shape)}"
                )
            neg = jnp.finfo(jnp.float32).min
            bias = jnp.where(attention_mask.astype(bool), 0.0, neg)[:, None, None, :]  # [B, 1, 1, L]
        hidden_states = self.encoder(x, bias, backend)
        last = self.final_layer_norm(hidden_states[-1])
        pooled = last[jnp.arange(last.shape[0]), self.eos_positions(input_ids)]  # [B, D]
        return CLIPTextOutput(last, pooled, hidden_states)

    def prompt_embeds(self, input_ids: jax.Array, clip_skip: int | None = None, *, backend: str = "auto") -> jax.Array:
        """[B, L, D] text conditioning as diffusers' SD/AnimateDiff pipelines compute it: the last hidden
        state, or with ``clip_skip`` = n >= 1 the output of layer -(n + 1) through ``final_layer_norm``."""
        out = self(input_ids, backend=backend)
        if clip_skip is None:
            return out.last_hidden_state
        if not 1 <= clip_skip < len(out.hidden_states) - 1:
            raise ValueError(f"clip_skip must be in 1..{len(out.hidden_states) - 2}, got {clip_skip}")
        return self.final_layer_norm(out.hidden_states[-(clip_skip + 1)])

    def eos_positions(self, input_ids: jax.Array) -> jax.Array:
        """[B] position of the pooled token, by transformers' rule: the first ``eos_token_id``
        (any of them, when the config lists several), or the highest id for the legacy id 2."""
        eos = self.config.eos_token_id
        if eos == _LEGACY_EOS_TOKEN_ID:
            return jnp.argmax(input_ids, axis=-1)
        is_eos = jnp.isin(input_ids, jnp.asarray(eos if isinstance(eos, tuple) else (eos,)))
        return jnp.argmax(is_eos.astype(jnp.int32), axis=-1)
