"""The LAION aesthetic predictor heads in Flax NNX: a score from an L2-normalised CLIP ViT-L/14 image
embedding.

Two heads exist and both load (:func:`convert.metrics_weights.load_aesthetic`):

- ``"mlp"``: improved-aesthetic-predictor (``sac+logos+ava1-l14-linearMSE.pth``), ``layers`` =
  Linear(768, 1024), Dropout, Linear(1024, 128), Dropout, Linear(128, 64), Dropout, Linear(64, 16),
  Linear(16, 1) with no activations between them (as published); keys ``layers.{0,2,4,6,7}.*``.
- ``"linear"``: the first LAION predictor (``sa_0_4_vit_l_14_linear.pth``, used by VBench's aesthetic
  quality), one Linear(768, 1); keys ``weight`` / ``bias``, held here as ``layers.0``.

Both score on LAION's 1-10 scale; the input must be L2-normalised (:func:`ieadapt_jax.scoring`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

KINDS = ("mlp", "linear")
MLP_WIDTHS = (1024, 128, 64, 16, 1)
_MLP_DROPOUT_AFTER = {0: 0.2, 1: 0.2, 2: 0.1}  # dropout after the first three Linears (identity here)


class AestheticHead(nnx.Module):
    """LAION aesthetic head (``kind`` "mlp" or "linear") on ``embed_dim``-wide normalised embeddings."""

    def __init__(self, kind: str = "mlp", embed_dim: int = 768, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if kind not in KINDS:
            raise ValueError(f"unknown aesthetic head {kind!r}; supported: {', '.join(KINDS)}")
        self.kind, self.embed_dim = kind, embed_dim
        kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        if kind == "linear":
            self.layers = nnx.List([nnx.Linear(embed_dim, 1, **kw)])
            return
        layers, width = [], embed_dim
        for i, out in enumerate(MLP_WIDTHS):
            layers.append(nnx.Linear(width, out, **kw))
            if i in _MLP_DROPOUT_AFTER:
                layers.append(nnx.Dropout(_MLP_DROPOUT_AFTER[i], deterministic=True))
            width = out
        self.layers = nnx.List(layers)

    def __call__(self, embeddings: jax.Array) -> jax.Array:
        """[..., embed_dim] L2-normalised image embeddings -> [...] aesthetic scores."""
        if embeddings.shape[-1] != self.embed_dim:
            raise ValueError(
                f"the aesthetic head takes {self.embed_dim}-d CLIP image embeddings (ViT-L/14), got {embeddings.shape[-1]}-d"
            )
        x = embeddings
        for layer in self.layers:
            x = layer(x)
        return x[..., 0]
