"""The cuDNN flash-attention kernel with its log-sum-exp residual, for the ``cudnn`` backend of :func:`attend`.

JAX's public ``jax.nn.dot_product_attention(..., return_residual=True)`` returns the residual cast to the
inputs' dtype (bf16: about 0.03 nats of error in an LSE near 8) and reshapes the output to the query's
shape, so value heads wider than the query's (the one-pass recording puts K beside V) are refused. The
fused-attention module under ``jax._src.cudnn`` has neither limit; it is the only private JAX API this
package touches and is imported here alone. Where a JAX release moves it, the public call is used
instead (two passes, bf16 residual), so the backend keeps working with slightly coarser entropies.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

try:  # private: see the module docstring
    from jax._src.cudnn import fused_attention_stablehlo as _fused
except ImportError:  # pragma: no cover - depends on the JAX release
    _fused = None


def attention_with_lse(q, k, v, scale, causal):
    """cuDNN flash attention returning (out [B, Nq, H, Dv], log-sum-exp [B, Nq, H] float32).

    Uses JAX's cuDNN fused-attention entry point directly: unlike ``jax.nn.dot_product_attention`` it
    accepts a value head dim different from the query's and keeps the residual in float32. Under
    ``vmap`` (a sweep's stacked configurations) the mapped axes are folded into the batch axis here:
    JAX's own batching rule for this primitive reshapes the values and the output with the query's and
    key's head dim, which breaks exactly when Dv differs (the one-pass recording, Dv = 2D).
    """

    @jax.custom_batching.custom_vmap
    def call(q, k, v):
        return lse_kernel(q, k, v, scale, causal)

    @call.def_vmap
    def fold(axis_size, in_batched, q, k, v):
        # mapped axis first: [M, B, N, H, D] -> [M·B, N, H, D]
        q, k, v = (x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
                   for x, batched in zip((q, k, v), in_batched))
        out, lse = call(*(x.reshape(axis_size * x.shape[1], *x.shape[2:]) for x in (q, k, v)))
        return (out.reshape(axis_size, -1, *out.shape[1:]),  # [M·B, Nq, H, Dv] -> [M, B, Nq, H, Dv]
                lse.reshape(axis_size, -1, *lse.shape[1:])), (True, True)

    return call(q, k, v)


def lse_kernel(q, k, v, scale, causal):
    """The cuDNN kernel itself on [B, N, H, D] inputs (no vmap): (out [B, Nq, H, Dv], lse [B, Nq, H] float32)."""
    if _fused is None:
        return public_lse_kernel(q, k, v, scale, causal)
    fa = _fused
    mask_type = fa.MaskType.CAUSAL if causal else fa.MaskType.NO_MASK
    out, lse = fa.dot_product_attention(q, k, v, scale=scale, mask_type=mask_type, qkv_layout="BTNH", return_residual=True)
    return out, lse.astype(jnp.float32).transpose(0, 2, 1)  # residual is [B, H, Nq]


def public_lse_kernel(q, k, v, scale, causal):
    """The public entry point's version of :func:`lse_kernel` (Dv must equal D)."""
    out, lse = jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=causal, implementation="cudnn",
                                            return_residual=True)
    return out, lse.astype(jnp.float32)  # [B, Nq, H, D], [B, Nq, H]


WIDE_VALUES: dict[tuple[int, int], bool] = {}


def wide_values_supported(head_dim: int, value_dim: int) -> bool:
    """Whether this cuDNN accepts value heads of ``value_dim`` with query/key heads of ``head_dim`` (probed once
    per pair: the one-pass recording needs value_dim = Dv + D).

    The probe runs eagerly even when first asked while a model is being traced (as it usually is):
    under a trace its arrays would be tracers, ``bool`` of the check would fail and the answer would
    wrongly be "no".
    """
    dims = (head_dim, value_dim)
    if _fused is None:
        return head_dim == value_dim
    if dims not in WIDE_VALUES:
        with jax.ensure_compile_time_eval():
            try:
                x = jnp.ones((1, 128, 1, head_dim), jnp.bfloat16)
                wide = jnp.ones((1, 128, 1, value_dim), jnp.bfloat16)
                out, _ = jax.jit(lambda a, b: attention_with_lse(a, a, b, 0.125, False))(x, wide)
                WIDE_VALUES[dims] = bool(jnp.allclose(out.astype(jnp.float32), 1.0))
            except Exception:  # noqa: BLE001 - any failure of the kernel means: use two passes
                WIDE_VALUES[dims] = False
    return WIDE_VALUES[dims]
