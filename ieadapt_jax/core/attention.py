"""The attention core: the one function every attention call of every model goes through.

    out, record = attend(q, k, v, rewiring=site_slice, record=True)

q [B, Nq, H, D], k [B, Nk, H, D], v [B, Nk, H, Dv]. ``rewiring`` is one site's slice of a
:class:`~ieadapt_jax.core.rewiring.Rewiring` (fields [R] and [R, 3] for R model rows).

**Rows and attention batch entries.** A model row (one video) usually stands for many attention batch
entries: its frames for spatial attention, its pixels for temporal attention. ``B`` must be a multiple
of R, and entries are grouped row-major: entry e belongs to row e // (B // R). So a model lays out its
attention batch with the row outermost ([rows·frames, HW, C] for spatial, [rows·H·W, frames, C] for
temporal) and the row's rewiring applies to every entry it owns: row b taking Q from row b' takes, for
each of its frames, the Q of the same frame of b'.

**Records** (docs/attention.md#records), each [R], averaged over the row's entries, heads, queries (and channels):
``entropy`` = mean of H(row of A)/log(N_k) (the paper's entropy percentage; causal rows are
normalised by their own number of visible keys), ``energy`` = mean((AV)²), ``energy_identity`` =
mean(V²), ``energy_uniform`` = mean(mean_k(V)²), ``energy_ratio`` = (energy − energy_uniform) /
(energy_identity − energy_uniform). A is the map actually computed at the site (after injection);
the mix (I/U perturbation) does not change the record.

**Backends**: ``reference`` materialises the map (tests, tiny maps); ``chunked`` is a pure-XLA online
softmax over key blocks that never holds an Nq×Nk buffer and computes entropy streaming
(H = m + log l − t/l); ``cudnn`` uses the fused cuDNN kernel (GPU, bf16/fp16) and, when recording,
gets entropy from its log-sum-exp: H = LSE − scale·⟨q, attn(q, k, k)⟩, with K riding along as extra
value channels of the same call. ``auto`` picks reference for small maps, cuDNN where it applies, and
chunked otherwise.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import cudnn
from .errors import AttentionError
from .rewiring import Rewiring, RewiringError, SiteRewiring

BACKENDS = ("auto", "reference", "chunked", "cudnn")
# auto uses the reference (materialising) path when the fp32 map has at most this many elements.
SMALL_MAP_ELEMENTS = 1 << 24
DEFAULT_Q_CHUNK = 512
DEFAULT_K_CHUNK = 512


class Record(NamedTuple):
    """Entropy and energy of one site per row ([R]); stacked over sites by models ([sites, R])."""

    entropy: jax.Array
    energy: jax.Array
    energy_identity: jax.Array
    energy_uniform: jax.Array
    energy_ratio: jax.Array


def stack_records(records: list[Record]) -> Record:
    """Stack per-site records ([R] each) into one record of [sites, R] arrays."""
    return Record(*(jnp.stack(field) for field in zip(*records)))


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    rewiring: SiteRewiring | None = None,
    *,
    record: bool = False,
    backend: str = "auto",
    bias: jax.Array | None = None,
    causal: bool = False,
    scale: float | None = None,
    rows: int | None = None,
    q_chunk: int = DEFAULT_Q_CHUNK,
    k_chunk: int = DEFAULT_K_CHUNK,
) -> tuple[jax.Array, Record | None]:
    """Scaled dot-product attention with rewiring and optional entropy/energy records.

    Args:
      q: [B, Nq, H, D] queries. k: [B, Nk, H, D] keys. v: [B, Nk, H, Dv] values.
      rewiring: this site's :class:`SiteRewiring` (q_from, k_from, v_from [R], mix [R, 3]) or None.
      record: also return a :class:`Record` per row.
      backend: "auto", "reference", "chunked" or "cudnn".
      bias: optional additive logit bias broadcastable to [B, H, Nq, Nk] (e.g. T5 relative bias).
      causal: key j is visible to query i only if j <= i (requires Nq == Nk).
      scale: logit scale; default 1/√D.
      rows: model rows the batch stands for (records are per row); default: the rewiring's rows,
        else B (each entry its own row).
      q_chunk, k_chunk: block sizes of the chunked backend.

    Returns:
      (out [B, Nq, H, Dv] in q's dtype, Record or None).
    """
    B, Nq, H, D = _check_qkv(q, k, v)
    Nk = k.shape[1]
    if causal and Nq != Nk:
        raise AttentionError(f"causal attention needs Nq == Nk, got Nq={Nq}, Nk={Nk}")
    if bias is not None:
        bias = jnp.asarray(bias)
        if bias.ndim != 4 or not all(b in (1, f) for b, f in zip(bias.shape, (B, H, Nq, Nk))):
            raise AttentionError(f"bias must broadcast to [B, H, Nq, Nk] = {[B, H, Nq, Nk]}, got {list(bias.shape)}")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if rewiring is not None:
        rw_rows = _check_site_rewiring(rewiring, B)
        if rows is not None and rows != rw_rows:
            raise RewiringError(f"rows={rows} but the site rewiring has {rw_rows} rows")
        rows = rw_rows
        q, k, v = _gather_rows(q, k, v, rewiring, rows)

    rows = B if rows is None else rows
    if B % rows:
        raise AttentionError(f"attention batch {B} is not a multiple of rows={rows}")

    name = resolve_backend(backend, q, k, bias=bias, record=record)
    if name == "reference":
        attn, entropy = reference_backend(q, k, v, bias, causal, scale, record)
    elif name == "chunked":
        attn, entropy = chunked_backend(q, k, v, bias, causal, scale, record, q_chunk, k_chunk)
    else:
        attn, entropy = cudnn_backend(q, k, v, bias, causal, scale, record)

    out = attn if rewiring is None else _mix(attn, v, rewiring.mix, rows)
    rec = _record(attn, v, entropy, rows) if record else None
    return out.astype(q.dtype), rec


def attention_map(q, k, *, bias=None, causal: bool = False, scale: float | None = None) -> jax.Array:
    """The explicit map softmax(q·kᵀ·scale + bias) as [B, H, Nq, Nk] float32 (tests and visualisation only)."""
    D = q.shape[-1]
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    logits = masked_logits(q, k, bias, causal, scale)
    return jax.nn.softmax(logits, axis=-1)


def resolve_backend(backend: str, q, k, *, bias=None, record: bool = False) -> str:
    """The backend ``attend`` will use for these inputs (see the module docstring)."""
    if backend not in BACKENDS:
        raise AttentionError(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cudnn_ok, why = _cudnn_applies(q, k, bias, record)
    if backend == "cudnn" and not cudnn_ok:
        raise AttentionError(f"backend 'cudnn' does not apply here: {why}")
    if backend != "auto":
        return backend
    B, Nq, H, _ = q.shape
    if B * H * Nq * k.shape[1] <= SMALL_MAP_ELEMENTS:
        return "reference"
    return "cudnn" if cudnn_ok else "chunked"


def _cudnn_applies(q, k, bias, record) -> tuple[bool, str]:
    if jax.default_backend() != "gpu":
        return False, f"needs a GPU (default backend is {jax.default_backend()})"
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        return False, f"needs bf16 or fp16 inputs, got {q.dtype}"
    D = q.shape[-1]
    if D % 8 or D > 128:
        return False, f"needs a head dim that is a multiple of 8 and at most 128, got {D}"
    if record and bias is not None:
        return False, "recording entropy with a logit bias needs the chunked backend"
    return True, ""


def _check_qkv(q, k, v) -> tuple[int, int, int, int]:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if getattr(x, "ndim", None) != 4:
            raise AttentionError(f"{name} must be [B, N, H, D], got shape {list(getattr(x, 'shape', ()))}")
    B, Nq, H, D = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise AttentionError(f"batch mismatch: q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}")
    if k.shape[2] != H or v.shape[2] != H:
        raise AttentionError(f"head count mismatch: q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}")
    if k.shape[3] != D:
        raise AttentionError(f"q and k need the same head dim: q {list(q.shape)}, k {list(k.shape)}")
    if v.shape[1] != k.shape[1]:
        raise AttentionError(f"k and v need the same length: k {list(k.shape)}, v {list(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise AttentionError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    return B, Nq, H, D


def _check_site_rewiring(rw, batch: int) -> int:
    if isinstance(rw, Rewiring):
        raise RewiringError("attend takes one site's slice: pass rewiring.site(i), not the whole Rewiring")
    if not isinstance(rw, SiteRewiring):
        raise RewiringError(f"rewiring must be a SiteRewiring, got {type(rw).__name__}")
    rows = rw.q_from.shape[0] if rw.q_from.ndim == 1 else -1
    for field in ("q_from", "k_from", "v_from"):
        x = getattr(rw, field)
        if x.shape != (rows,) or rows < 1:
            raise RewiringError(f"site rewiring {field} must be [R], got {list(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise RewiringError(f"site rewiring {field} must be int32, got {x.dtype}")
    if rw.mix.shape != (rows, 3):
        raise RewiringError(f"site rewiring mix must be [R, 3] = [{rows}, 3], got {list(rw.mix.shape)}")
    if batch % rows:
        raise RewiringError(
            f"attention batch {batch} is not a multiple of the rewiring's {rows} rows "
            "(each row must own the same number of attention batch entries)"
        )
    return rows


def _take_rows(x, idx, rows: int):
    """x [B, ...] grouped as [rows, B // rows, ...]; row r of the result is row idx[r] of x."""
    grouped = x.reshape((rows, x.shape[0] // rows) + x.shape[1:])  # [R, B/R, N, H, D]
    return jnp.take(grouped, idx.astype(jnp.int32), axis=0, mode="clip").reshape(x.shape)


def _gather_rows(q, k, v, rw: SiteRewiring, rows: int):
    """Q, K, V of the rows the rewiring names (one copy each: no lax.cond, which vmap would turn into both branches)."""
    return _take_rows(q, rw.q_from, rows), _take_rows(k, rw.k_from, rows), _take_rows(v, rw.v_from, rows)


def _per_entry(values, rows: int, batch: int):
    """[R, ...] per-row values repeated to [B, ...] per attention batch entry."""
    return jnp.repeat(values, batch // rows, axis=0)


def _mix(attn, v, mix, rows: int):
    """a·attn + i·V + u·mean_k(V) per row; the identity term only exists where Nq == Nk."""
    B = attn.shape[0]
    w = _per_entry(mix.astype(jnp.float32), rows, B)  # [B, 3]
    a, i, u = (w[:, j, None, None, None] for j in range(3))
    vf = v.astype(jnp.float32)
    out = a * attn.astype(jnp.float32) + u * jnp.mean(vf, axis=1, keepdims=True)
    if attn.shape[1] == v.shape[1]:
        out = out + i * vf
    return out


def _row_mean(x, rows: int):
    """Mean of x [B, ...] over everything but the row: [R]."""
    return jnp.mean(x.reshape(rows, -1), axis=1)


def _record(attn, v, entropy, rows: int) -> Record:
    af = attn.astype(jnp.float32)
    vf = v.astype(jnp.float32)
    energy = _row_mean(af * af, rows)
    e_id = _row_mean(vf * vf, rows)
    vbar = jnp.mean(vf, axis=1)
    e_u = _row_mean(vbar * vbar, rows)
    den = e_id - e_u
    ratio = jnp.where(den > 0, (energy - e_u) / jnp.where(den > 0, den, 1.0), jnp.nan)
    return Record(_row_mean(entropy, rows), energy, e_id, e_u, ratio)


def _visible_keys(Nq: int, Nk: int, causal: bool):
    """[Nq] number of keys each query sees."""
    if causal:
        return jnp.arange(1, Nq + 1, dtype=jnp.float32)
    return jnp.full((Nq,), float(Nk), jnp.float32)


def normalise_entropy(entropy, Nq: int, Nk: int, causal: bool):
    """entropy [B, Nq, H] in nats → fraction of its maximum log(visible keys); 0 where one key is visible."""
    n = _visible_keys(Nq, Nk, causal)[None, :, None]
    return jnp.where(n > 1, entropy / jnp.log(jnp.maximum(n, 2.0)), 0.0)


def masked_logits(q, k, bias, causal, scale):
    """The float32 logits q·kᵀ·scale + bias as [B, H, Nq, Nk], invisible keys of a causal map at −inf."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if causal:
        Nq, Nk = logits.shape[-2:]
        visible = jnp.arange(Nk)[None, :] <= jnp.arange(Nq)[:, None]
        logits = jnp.where(visible, logits, -jnp.inf)
    return logits


def reference_backend(q, k, v, bias, causal, scale, want_entropy):
    """Materialise the map (fp32). Returns attn [B, Nq, H, Dv] f32 and normalised entropy [B, Nq, H]."""
    p = jax.nn.softmax(masked_logits(q, k, bias, causal, scale), axis=-1)  # [B, H, Nq, Nk]
    attn = jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(jnp.float32))
    if not want_entropy:
        return attn, None
    plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    ent = -jnp.sum(plogp, axis=-1).transpose(0, 2, 1)  # [B, Nq, H]
    return attn, normalise_entropy(ent, q.shape[1], k.shape[1], causal)


def _pad_axis(x, axis: int, size: int):
    pad = size - x.shape[axis]
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


def chunked_backend(q, k, v, bias, causal, scale, want_entropy, q_chunk, k_chunk):
    """Online softmax over key blocks, query blocks mapped: memory O(B·H·q_chunk·k_chunk)."""
    B, Nq, H, D = q.shape
    Nk, Dv = k.shape[1], v.shape[-1]
    qc, kc = min(q_chunk, Nq), min(k_chunk, Nk)
    nqb, nkb = -(-Nq // qc), -(-Nk // kc)
    acc_dtype = jnp.float32
    pv_dtype = v.dtype if v.dtype in (jnp.bfloat16, jnp.float16) else jnp.float32
    qb = _pad_axis(q, 1, nqb * qc).reshape(B, nqb, qc, H, D).swapaxes(0, 1)  # [nqb, B, qc, H, D]
    kb = _pad_axis(k, 1, nkb * kc).reshape(B, nkb, kc, H, D).swapaxes(0, 1)  # [nkb, B, kc, H, D]
    vb = _pad_axis(v, 1, nkb * kc).reshape(B, nkb, kc, H, Dv).swapaxes(0, 1)  # [nkb, B, kc, H, Dv]
    if bias is not None:
        bias = bias.astype(acc_dtype)  # [B|1, H|1, Nq|1, Nk|1], padded like q and k
        if bias.shape[2] > 1:
            bias = _pad_axis(bias, 2, nqb * qc)
        if bias.shape[3] > 1:
            bias = _pad_axis(bias, 3, nkb * kc)

    def query_block(args):
        qi, qblk = args  # qblk [B, qc, H, D]
        q_pos = qi * qc + jnp.arange(qc)

        def key_step(carry, xs):
            m, l, t, acc = carry
            kj, kblk, vblk = xs
            k_pos = kj * kc + jnp.arange(kc)
            s = jnp.einsum("bqhd,bkhd->bhqk", qblk, kblk, preferred_element_type=acc_dtype) * scale
            if bias is not None:
                s = s + _bias_block(bias, qi * qc, kj * kc, qc, kc)
            visible = (k_pos < Nk)[None, :]
            if causal:
                visible = visible & (k_pos[None, :] <= q_pos[:, None])
            s = jnp.where(visible, s, -jnp.inf)  # [B, H, qc, kc]
            m_new = jnp.maximum(m, jnp.max(s, axis=-1))
            m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
            corr = jnp.exp(m - m_safe)
            p = jnp.exp(s - m_safe[..., None])
            l = l * corr + jnp.sum(p, axis=-1)
            acc = acc * corr.transpose(0, 2, 1)[..., None] + jnp.einsum(
                "bhqk,bkhd->bqhd", p.astype(pv_dtype), vblk, preferred_element_type=acc_dtype
            )
            if want_entropy:
                t = t * corr + jnp.sum(jnp.where(visible, p * jnp.where(visible, s, 0.0), 0.0), axis=-1)
            return (m_new, l, t, acc), None

        # full_like(qblk, ...): inside shard_map the carry then varies over the manual axes qblk varies over,
        # as the carry the loop body returns does
        init = (
            jnp.full_like(qblk, -jnp.inf, acc_dtype, shape=(B, H, qc)),
            jnp.full_like(qblk, 0.0, acc_dtype, shape=(B, H, qc)),
            jnp.full_like(qblk, 0.0, acc_dtype, shape=(B, H, qc)),
            jnp.full_like(qblk, 0.0, acc_dtype, shape=(B, qc, H, Dv)),
        )
        (m, l, t, acc), _ = jax.lax.scan(key_step, init, (jnp.arange(nkb), kb, vb))
        l_safe = jnp.where(l > 0, l, 1.0)
        out = acc / l_safe.transpose(0, 2, 1)[..., None]
        ent = (jnp.where(jnp.isfinite(m), m, 0.0) + jnp.log(l_safe) - t / l_safe).transpose(0, 2, 1)  # [B, qc, H]
        return out, ent

    out, ent = jax.lax.map(query_block, (jnp.arange(nqb), qb))
    out = out.swapaxes(0, 1).reshape(B, nqb * qc, H, Dv)[:, :Nq]  # [B, Nq, H, Dv]
    if not want_entropy:
        return out, None
    ent = ent.swapaxes(0, 1).reshape(B, nqb * qc, H)[:, :Nq]
    return out, normalise_entropy(ent, Nq, Nk, causal)


def _bias_block(bias, q0, k0, qc, kc):
    """The [.., qc, kc] block of a (padded, broadcastable) bias starting at (q0, k0)."""
    bq = qc if bias.shape[2] > 1 else 1
    bk = kc if bias.shape[3] > 1 else 1
    start = (0, 0, q0 if bias.shape[2] > 1 else 0, k0 if bias.shape[3] > 1 else 0)
    return jax.lax.dynamic_slice(bias, start, bias.shape[:2] + (bq, bk))


def cudnn_backend(q, k, v, bias, causal, scale, want_entropy):
    """Fused cuDNN attention; entropy = LSE − scale·⟨q, attn(q, k, k)⟩ from the log-sum-exp residual."""
    if not want_entropy:
        out = jax.nn.dot_product_attention(q, k, v, bias, scale=scale, is_causal=causal, implementation="cudnn")
        return out, None
    Dv = v.shape[-1]
    if cudnn.wide_values_supported(q.shape[-1], Dv + k.shape[-1]):
        # one pass: K rides along as extra value channels, [B, Nk, H, Dv + D]
        out, lse = cudnn.attention_with_lse(q, k, jnp.concatenate([v, k], axis=-1), scale, causal)
        attn, kbar = out[..., :Dv], out[..., Dv:]
    else:
        attn, lse = cudnn.attention_with_lse(q, k, v, scale, causal)
        kbar = jax.nn.dot_product_attention(q, k, k, scale=scale, is_causal=causal, implementation="cudnn")
    inner = jnp.sum(q.astype(jnp.float32) * kbar.astype(jnp.float32), axis=-1)  # [B, Nq, H]
    ent = lse - scale * inner
    return attn, normalise_entropy(ent, q.shape[1], k.shape[1], causal)
