"""The attention core against hand-computed oracles and the explicit-map path."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieadapt_jax import SiteRewiring, attend, attention_map, mode_mix, resolve_backend
from ieadapt_jax.core.rewiring import RewiringError

BACKENDS = ["reference", "chunked"]


def site_rw(rows, q_from=None, k_from=None, v_from=None, mix=None):
    own = np.arange(rows, dtype=np.int32)
    pick = lambda x: own if x is None else np.asarray(x, np.int32)  # noqa: E731
    mix = np.tile(np.float32([1, 0, 0]), (rows, 1)) if mix is None else np.asarray(mix, np.float32)
    return SiteRewiring(jnp.asarray(pick(q_from)), jnp.asarray(pick(k_from)), jnp.asarray(pick(v_from)), jnp.asarray(mix))


# ---------------------------------------------------------------- hand-computed oracles
# One row, one head, D = 1, two tokens: q = k = [[0], [ln 3]], v = [[1], [5]], scale 1.
# Logits of query 0: [0, 0] -> softmax [1/2, 1/2]; query 1: [0, ln3·ln3].
LN3 = math.log(3.0)
Q = np.array([[[[0.0]], [[LN3]]]], np.float32)  # [1, 2, 1, 1]
V = np.array([[[[1.0]], [[5.0]]]], np.float32)


def _hand_map():
    s1 = np.array([0.0, LN3 * LN3])
    p1 = np.exp(s1 - s1.max()) / np.exp(s1 - s1.max()).sum()
    return np.array([[0.5, 0.5], p1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_attention_matches_hand_computation(backend):
    p = _hand_map()
    out, rec = attend(Q, Q, V, record=True, backend=backend, scale=1.0)
    expected = p @ np.array([1.0, 5.0])
    np.testing.assert_allclose(np.asarray(out)[0, :, 0, 0], expected, rtol=1e-6)
    ent = -(p * np.log(p)).sum(axis=1) / math.log(2.0)
    np.testing.assert_allclose(float(rec.entropy[0]), ent.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(rec.energy[0]), np.mean(expected**2), rtol=1e-6)
    np.testing.assert_allclose(float(rec.energy_identity[0]), (1 + 25) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(rec.energy_uniform[0]), 9.0, rtol=1e-6)
    np.testing.assert_allclose(float(rec.energy_ratio[0]), (np.mean(expected**2) - 9.0) / (13.0 - 9.0), rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "mode, expected",
    [("I", [1.0, 5.0]), ("U", [3.0, 3.0]), (0.25, [0.25 * 1 + 0.75 * 3, 0.25 * 5 + 0.75 * 3])],
)
def test_perturbation_modes_match_hand_computation(backend, mode, expected):
    out, rec = attend(Q, Q, V, site_rw(1, mix=[mode_mix(mode)]), record=True, backend=backend, scale=1.0)
    np.testing.assert_allclose(np.asarray(out)[0, :, 0, 0], expected, rtol=1e-6)
    # the record describes the map A computed at the site, not the mix
    plain = attend(Q, Q, V, record=True, backend=backend, scale=1.0)[1]
    np.testing.assert_allclose(np.asarray(rec.entropy), np.asarray(plain.entropy), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_injection_modes_match_hand_computation(backend):
    # Row 0: q = k = [0, ln3], v = [1, 5]. Row 1: q = k = 0 (uniform map), v = [10, 20].
    q = np.concatenate([Q, np.zeros_like(Q)])
    v = np.concatenate([V, np.array([[[[10.0]], [[20.0]]]], np.float32)])
    p0 = _hand_map()
    # "qk": row 1 uses row 0's map on its own values.
    out = attend(q, q, v, site_rw(2, q_from=[0, 0], k_from=[0, 0]), backend=backend, scale=1.0)[0]
    np.testing.assert_allclose(np.asarray(out)[1, :, 0, 0], p0 @ np.array([10.0, 20.0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out)[0, :, 0, 0], p0 @ np.array([1.0, 5.0]), rtol=1e-6)
    # "kv": row 1 keeps its own queries (0 -> uniform over row 0's keys) and reads row 0's values.
    out = attend(q, q, v, site_rw(2, k_from=[0, 0], v_from=[0, 0]), backend=backend, scale=1.0)[0]
    np.testing.assert_allclose(np.asarray(out)[1, :, 0, 0], [3.0, 3.0], rtol=1e-6)
    # "v": row 1 keeps its uniform map and reads row 0's values.
    out = attend(q, q, v, site_rw(2, v_from=[0, 0]), backend=backend, scale=1.0)[0]
    np.testing.assert_allclose(np.asarray(out)[1, :, 0, 0], [3.0, 3.0], rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_map_has_full_entropy_and_one_hot_map_none(backend):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(1, 7, 2, 4)).astype(np.float32)
    zeros = np.zeros((1, 7, 2, 4), np.float32)
    rec = attend(zeros, zeros, v, record=True, backend=backend)[1]
    np.testing.assert_allclose(float(rec.entropy[0]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(rec.energy_ratio[0]), 0.0, atol=1e-6)
    onehot = np.zeros((1, 7, 2, 7), np.float32)
    onehot[0, np.arange(7), :, np.arange(7)] = 100.0
    rec = attend(onehot, onehot, v, record=True, backend=backend, scale=1.0)[1]
    assert float(rec.entropy[0]) < 1e-6
    np.testing.assert_allclose(float(rec.energy_ratio[0]), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- every mode vs the explicit-map path
def explicit(q, k, v, rw, rows, bias=None, causal=False, scale=None):
    """Gather rows, materialise the map with attention_map, apply the mix: the definition, in numpy."""
    B = q.shape[0]
    R = B // rows

    def take(x, idx):
        g = x.reshape((rows, R) + x.shape[1:])
        return g[np.asarray(idx)].reshape(x.shape)

    qf, kf, vf = (np.asarray(x, np.float32) for x in (q, k, v))
    if rw is not None:
        qf, kf, vf = take(qf, rw.q_from), take(kf, rw.k_from), take(vf, rw.v_from)
    p = np.asarray(attention_map(jnp.asarray(qf), jnp.asarray(kf), bias=bias, causal=causal, scale=scale), np.float64)
    attn = np.einsum("bhqk,bkhd->bqhd", p, vf)
    ent_q = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(-1)  # [B, H, Nq]
    nk = np.arange(1, q.shape[1] + 1) if causal else np.full(q.shape[1], k.shape[1])
    norm = np.where(nk > 1, np.log(np.maximum(nk, 2)), np.inf)
    entropy = (ent_q / norm[None, None, :]).reshape(rows, -1).mean(1)
    if rw is None:
        return attn, entropy
    w = np.repeat(np.asarray(rw.mix), R, axis=0)[:, :, None, None, None]
    out = w[:, 0] * attn + w[:, 2] * vf.mean(1, keepdims=True)
    if q.shape[1] == k.shape[1]:
        out = out + w[:, 1] * vf
    return out, entropy


SHAPES = [
    # (rows, entries per row, Nq, Nk, H, D, Dv)
    (2, 1, 16, 16, 1, 8, 8),
    (3, 2, 37, 37, 3, 5, 5),
    (2, 4, 19, 7, 2, 8, 6),  # cross attention, Nq != Nk
    (4, 1, 1, 9, 2, 4, 4),
    (2, 3, 65, 65, 4, 16, 16),
]


def random_rewiring(rng, rows, self_attention):
    mix = []
    for _ in range(rows):
        a, i, u = rng.uniform(size=3)
        mix.append((a, i if self_attention else 0.0, u))
    return site_rw(
        rows,
        q_from=rng.integers(0, rows, rows),
        k_from=rng.integers(0, rows, rows),
        v_from=rng.integers(0, rows, rows),
        mix=mix,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_mode_matches_explicit_map(backend, shape, dtype):
    rows, R, Nq, Nk, H, D, Dv = shape
    rng = np.random.default_rng(hash((backend, shape, dtype)) % 2**32)
    q = rng.normal(size=(rows * R, Nq, H, D)).astype(np.float32)
    k = rng.normal(size=(rows * R, Nk, H, D)).astype(np.float32)
    v = rng.normal(size=(rows * R, Nk, H, Dv)).astype(np.float32)
    if dtype == "bfloat16":  # compare on the bf16-rounded inputs
        q, k, v = (np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32) for x in (q, k, v))
    modes = [None, random_rewiring(rng, rows, Nq == Nk)]
    for mode in ("I", "U", 0.3) if Nq == Nk else ("U",):
        modes.append(site_rw(rows, mix=[mode_mix(mode)] * rows))
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == "float32" else dict(rtol=3e-2, atol=3e-2)
    for rw in modes:
        args = [jnp.asarray(x, dtype) for x in (q, k, v)]
        out, rec = attend(*args, rw, record=True, backend=backend, rows=rows, q_chunk=16, k_chunk=8)
        assert out.dtype == jnp.dtype(dtype)
        want, want_entropy = explicit(q, k, v, rw, rows)
        np.testing.assert_allclose(np.asarray(out, np.float32), want, **tol)
        np.testing.assert_allclose(np.asarray(rec.entropy), want_entropy, **tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_causal_and_bias_match_explicit_map(backend):
    rng = np.random.default_rng(3)
    q, k, v = (rng.normal(size=(2, 21, 3, 8)).astype(np.float32) for _ in range(3))
    bias = rng.normal(size=(1, 3, 21, 21)).astype(np.float32)
    for kw in (dict(causal=True), dict(bias=bias), dict(causal=True, bias=bias, scale=1.0)):
        out, rec = attend(q, k, v, record=True, backend=backend, q_chunk=8, k_chunk=4, **kw)
        want, want_entropy = explicit(q, k, v, None, 2, **kw)
        np.testing.assert_allclose(np.asarray(out), want, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(np.asarray(rec.entropy), want_entropy, rtol=2e-5, atol=2e-6)


def test_streaming_entropy_equals_materialised_entropy():
    rng = np.random.default_rng(7)
    for Nq, Nk in [(300, 300), (129, 77), (64, 513)]:
        q = rng.normal(size=(3, Nq, 2, 16)).astype(np.float32) * 2
        k = rng.normal(size=(3, Nk, 2, 16)).astype(np.float32) * 2
        v = rng.normal(size=(3, Nk, 2, 16)).astype(np.float32)
        ref = attend(q, k, v, record=True, backend="reference")[1]
        chk = attend(q, k, v, record=True, backend="chunked", q_chunk=64, k_chunk=100)[1]
        for field in ref._fields:
            np.testing.assert_allclose(np.asarray(getattr(chk, field)), np.asarray(getattr(ref, field)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- transformations
def test_vmap_over_configurations_equals_loop():
    rng = np.random.default_rng(11)
    rows, R = 3, 2
    q, k, v = (jnp.asarray(rng.normal(size=(rows * R, 24, 2, 8)), jnp.float32) for _ in range(3))
    configs = [random_rewiring(rng, rows, True) for _ in range(5)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *configs)

    def run(rw):
        return attend(q, k, v, rw, record=True, backend="chunked", q_chunk=8, k_chunk=8)

    out_v, rec_v = jax.jit(jax.vmap(run))(stacked)
    for c, rw in enumerate(configs):
        out, rec = run(rw)
        np.testing.assert_allclose(np.asarray(out_v[c]), np.asarray(out), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(rec_v.entropy[c]), np.asarray(rec.entropy), rtol=1e-5)


def test_changing_rewiring_values_does_not_retrace():
    rng = np.random.default_rng(5)
    q, k, v = (jnp.asarray(rng.normal(size=(4, 16, 2, 8)), jnp.float32) for _ in range(3))
    traces = []

    @jax.jit
    def f(rw):
        traces.append(1)
        return attend(q, k, v, rw, record=True)

    for _ in range(4):
        jax.block_until_ready(f(random_rewiring(rng, 4, True)))
    assert len(traces) == 1


def test_chunked_path_allocates_no_full_map():
    N, H, D = 4096, 1, 16
    spec = jax.ShapeDtypeStruct((1, N, H, D), jnp.float32)
    full_map_bytes = N * N * 4
    for record in (False, True):
        fn = jax.jit(lambda q, k, v: attend(q, k, v, record=record, backend="chunked"))
        mem = fn.lower(spec, spec, spec).compile().memory_analysis()
        assert mem is not None
        assert mem.temp_size_in_bytes < full_map_bytes / 8, mem
    ref = jax.jit(lambda q, k, v: attend(q, k, v, backend="reference"))
    assert ref.lower(spec, spec, spec).compile().memory_analysis().temp_size_in_bytes >= full_map_bytes


def test_auto_backend_choice_on_cpu():
    small = jnp.zeros((2, 16, 2, 8))
    big = jax.ShapeDtypeStruct((8, 4096, 8, 40), jnp.float32)
    assert resolve_backend("auto", small, small) == "reference"
    assert resolve_backend("auto", big, big) == "chunked"
    with pytest.raises(ValueError, match="cudnn"):
        resolve_backend("cudnn", small, small)
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("flash", small, small)


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors():
    x = jnp.zeros((4, 8, 2, 4))
    with pytest.raises(ValueError, match=r"q must be \[B, N, H, D\]"):
        attend(jnp.zeros((4, 8, 8)), x, x)
    with pytest.raises(ValueError, match="same head dim"):
        attend(x, jnp.zeros((4, 8, 2, 5)), x)
    with pytest.raises(ValueError, match="head count"):
        attend(x, jnp.zeros((4, 8, 3, 4)), jnp.zeros((4, 8, 3, 4)))
    with pytest.raises(ValueError, match="causal attention needs Nq == Nk"):
        attend(x, jnp.zeros((4, 5, 2, 4)), jnp.zeros((4, 5, 2, 4)), causal=True)
    with pytest.raises(ValueError, match="bias must broadcast"):
        attend(x, x, x, bias=jnp.zeros((1, 2, 8, 7)))
    with pytest.raises(RewiringError, match="not a multiple"):
        attend(x, x, x, site_rw(3))
    with pytest.raises(RewiringError, match=r"mix must be \[R, 3\]"):
        attend(x, x, x, SiteRewiring(*site_rw(2)[:3], jnp.zeros((2, 2))))
    with pytest.raises(RewiringError, match="must be int32"):
        attend(x, x, x, SiteRewiring(jnp.zeros(2), *site_rw(2)[1:]))


def test_chunked_backend_runs_inside_shard_map_with_varying_inputs():
    """The online-softmax scan's carry must vary over the manual axes its inputs vary over (as in a sweep
    sharded over devices); the result equals the reference backend's."""
    from jax.sharding import Mesh, PartitionSpec

    q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 40, 2, 8))  # [B=2, N=40, H=2, D=8] each
    mesh = Mesh(np.array(jax.devices()[:1]), ("configs",))

    def run(backend):
        body = lambda q, k, v: attend(q, k, v, record=True, backend=backend, q_chunk=16, k_chunk=16)[0]  # noqa: E731
        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=PartitionSpec("configs"),
                                     out_specs=PartitionSpec("configs"), check_vma=True))(q, k, v)

    np.testing.assert_allclose(run("chunked"), run("reference"), atol=1e-5)


def _cudnn_stand_in(seen=None):
    """The cuDNN LSE kernel's contract on CPU (out [B, Nq, H, Dv], log-sum-exp [B, Nq, H]) by the materialising
    path; ``seen`` collects the query shapes it is called with."""
    import ieadapt_jax.core.attention as attention

    def kernel(q, k, v, scale, causal):
        if seen is not None:
            seen.append(q.shape)
        logits = attention.masked_logits(q, k, None, causal, scale)  # [B, H, Nq, Nk]
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v.astype(jnp.float32))
        return out.astype(q.dtype), jax.nn.logsumexp(logits, axis=-1).transpose(0, 2, 1)

    return kernel


def test_cudnn_single_pass_probe_answers_the_same_when_first_asked_inside_a_trace(monkeypatch):
    """The wide-values probe is first reached while a model is traced; it must still run eagerly.

    On CPU there is no cuDNN, so the kernel is stood in for by the materialising path. Before the fix the
    probe's check became a tracer under the outer trace, failed, and every recording forward silently took
    the two-pass path.
    """
    import ieadapt_jax.core.cudnn as cudnn

    monkeypatch.setattr(cudnn, "lse_kernel", _cudnn_stand_in())
    monkeypatch.setattr(cudnn, "WIDE_VALUES", {})
    answers = []

    @jax.jit
    def traced(x):
        answers.append(cudnn.wide_values_supported(40, 80))
        return x

    traced(jnp.ones(3))
    assert answers == [True]


def test_cudnn_call_folds_vmapped_configurations_into_its_batch(monkeypatch):
    """Under vmap (a sweep's stacked configurations) the kernel gets one [M·B] batch, also with value heads wider
    than the key's (JAX's own batching rule reshapes values with the key's head dim and fails there), and the
    results equal a loop over the configurations. Nested vmaps and unmapped operands fold too."""
    import ieadapt_jax.core.cudnn as cudnn

    seen = []
    monkeypatch.setattr(cudnn, "lse_kernel", _cudnn_stand_in(seen))
    M, B, N, H, D = 3, 2, 16, 2, 8
    q, k = jax.random.normal(jax.random.PRNGKey(0), (2, M, B, N, H, D))
    wide = jax.random.normal(jax.random.PRNGKey(1), (M, B, N, H, 2 * D))
    call = functools.partial(cudnn.attention_with_lse, scale=0.3, causal=False)

    out, lse = jax.jit(jax.vmap(call))(q, k, wide)
    assert seen[-1] == (M * B, N, H, D)
    for i in range(M):
        want_out, want_lse = call(q[i], k[i], wide[i])
        np.testing.assert_allclose(out[i], want_out, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lse[i], want_lse, rtol=1e-6, atol=1e-6)

    shared, _ = jax.vmap(call, in_axes=(0, None, 0))(q, k[0], wide)  # keys shared by every configuration
    assert seen[-1] == (M * B, N, H, D)
    np.testing.assert_allclose(shared[2], call(q[2], k[0], wide[2])[0], rtol=1e-6, atol=1e-6)

    nested = jax.vmap(jax.vmap(call))(q.reshape(1, M, B, N, H, D), k.reshape(1, M, B, N, H, D), wide[None])
    assert seen[-1] == (M * B, N, H, D)
    np.testing.assert_allclose(nested[0][0], out, rtol=1e-6, atol=1e-6)


def test_vmapped_cudnn_recording_matches_the_reference(monkeypatch):
    """attend(backend="cudnn", record=True) under vmap, as a recording sweep on a GPU runs it (cuDNN stood in
    for on CPU): one-pass entropy from the log-sum-exp equals the materialised map's."""
    import ieadapt_jax.core.attention as attention
    import ieadapt_jax.core.cudnn as cudnn

    monkeypatch.setattr(attention.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(cudnn, "lse_kernel", _cudnn_stand_in())
    monkeypatch.setattr(cudnn, "WIDE_VALUES", {})
    q, k, v = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 2, 32, 2, 40)).astype(jnp.bfloat16)

    def run(backend):
        return jax.vmap(lambda q, k, v: attend(q, k, v, backend=backend, record=True))(q, k, v)

    (out, rec), (want_out, want_rec) = run("cudnn"), run("reference")
    assert cudnn.WIDE_VALUES == {(40, 80): True}
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(want_out, np.float32), atol=2e-2)
    np.testing.assert_allclose(rec.entropy, want_rec.entropy, atol=5e-3)
    np.testing.assert_allclose(rec.energy, want_rec.energy, rtol=2e-2)
