"""The rewiring algebra and site selectors: constructors, validation, errors a user can act on."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ieadapt_jax as ia
from ieadapt_jax import RewiringError, SiteError, SiteTable

TABLE = SiteTable.build(
    [
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn1", "spatial_self", 2, 8),
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn2", "cross", 2, 8),
        ("down_blocks.0.motion_modules.0.transformer_blocks.0.attn1", "temporal", 2, 8),
        ("down_blocks.0.motion_modules.0.transformer_blocks.0.attn2", "temporal", 2, 8),
        ("mid_block.attentions.0.transformer_blocks.0.attn1", "spatial_self", 2, 16),
        ("mid_block.attentions.0.transformer_blocks.0.attn2", "cross", 2, 16),
        ("up_blocks.1.attentions.0.transformer_blocks.0.attn1", "spatial_self", 2, 8),
        ("up_blocks.1.attentions.0.transformer_blocks.0.attn2", "cross", 2, 8),
    ]
)


def test_site_table_kind_indices_and_selectors():
    assert [s.kind_index for s in TABLE] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert TABLE.select(kind="spatial_self") == [0, 4, 6]
    assert TABLE.select(kind="self") == [0, 2, 3, 4, 6]
    assert TABLE.select(kind="cross", block="mid") == [5]
    assert TABLE.select(block="down_blocks.0") == [0, 1, 2, 3]
    assert TABLE.select(regex=r"motion_modules\.0\..*attn2") == [3]
    assert TABLE.select(kind="spatial_self", index=[2]) == [6]
    assert TABLE.select(index=[1, 7]) == [1, 7]
    assert TABLE.select("mid_block.attentions.0.transformer_blocks.0.attn1") == [4]


def test_selection_by_entropy_rank():
    entropy = np.array([0.9, 0.5, 0.2, 0.95, 0.1, 0.3, 0.6, 0.4])
    # self sites: 0 (0.9), 2 (0.2), 3 (0.95), 4 (0.1), 6 (0.6) -> bottom 40% = two lowest
    assert TABLE.by_entropy(entropy, 0.4) == [2, 4]
    assert TABLE.by_entropy(entropy, 0.4, lowest=False) == [0, 3]
    assert TABLE.by_entropy(entropy, 1.0) == [0, 2, 3, 4, 6]
    assert TABLE.argmax_entropy(entropy) == 3
    assert TABLE.by_entropy(entropy, 0.01) == [4]  # at least one site
    with pytest.raises(SiteError, match=r"in \(0, 1\]"):
        TABLE.by_entropy(entropy, 0.0)
    with pytest.raises(SiteError, match="one value per site"):
        TABLE.by_entropy(entropy[:3], 0.5)


def test_selector_errors_name_what_is_valid():
    with pytest.raises(SiteError, match="Valid sites") as e:
        TABLE.index("down_blocks.0.attentions.0.transformer_blocks.0.atn1")
    assert "Did you mean" in str(e.value) and "attn1" in str(e.value)
    with pytest.raises(SiteError, match="unknown site kind 'spatial'"):
        TABLE.select(kind="spatial")
    with pytest.raises(SiteError, match="blocks: down_blocks.0, mid_block.attentions, up_blocks.1"):
        TABLE.select(block="down_blocks.3")
    with pytest.raises(SiteError, match=r"spatial_self index \[3\] out of range: there are 3"):
        TABLE.select(kind="spatial_self", index=[3])
    with pytest.raises(SiteError, match="bad site regex"):
        TABLE.select(regex="(")
    with pytest.raises(SiteError, match="duplicate site names"):
        SiteTable.build([("a", "cross", 1, 1), ("a", "cross", 1, 1)])


def test_noop_perturb_inject_build_the_documented_arrays():
    rw = ia.noop(TABLE, 4)
    assert rw.q_from.shape == (8, 4) and rw.mix.shape == (8, 4, 3)
    assert rw.q_from.dtype == np.int32 and rw.mix.dtype == np.float32
    np.testing.assert_array_equal(rw.k_from[3], [0, 1, 2, 3])
    np.testing.assert_array_equal(rw.mix[5, 2], [1, 0, 0])

    p = ia.perturb(rw, TABLE, TABLE.select(kind="temporal"), "I", rows=[1, 3])
    np.testing.assert_array_equal(p.mix[2, :, 1], [0, 1, 0, 1])
    np.testing.assert_array_equal(p.mix[3, :, 0], [1, 0, 1, 0])
    np.testing.assert_array_equal(p.mix[0], rw.mix[0])
    np.testing.assert_array_equal(rw.mix[2, :, 1], 0)  # constructors do not mutate their input

    u = ia.perturb(rw, TABLE, "mid_block.attentions.0.transformer_blocks.0.attn2", "U")
    np.testing.assert_array_equal(u.mix[5], np.tile([0, 0, 1], (4, 1)))
    a = ia.perturb(rw, TABLE, [0], 0.3)
    np.testing.assert_allclose(a.mix[0, 0], [0, 0.3, 0.7])

    qk = ia.inject(rw, TABLE, [0, 4], src=[0, 1], dst=[2, 3], what="qk")
    np.testing.assert_array_equal(qk.q_from[4], [0, 1, 0, 1])
    np.testing.assert_array_equal(qk.k_from[0], [0, 1, 0, 1])
    np.testing.assert_array_equal(qk.v_from[0], [0, 1, 2, 3])
    kv = ia.inject(rw, TABLE, [6], src=0, dst=1, what="kv")
    np.testing.assert_array_equal(kv.q_from[6], [0, 1, 2, 3])
    np.testing.assert_array_equal(kv.k_from[6], [0, 0, 2, 3])
    np.testing.assert_array_equal(kv.v_from[6], [0, 0, 2, 3])
    v = ia.inject(rw, TABLE, [6], src=0, dst=1, what="v")
    np.testing.assert_array_equal(v.k_from[6], [0, 1, 2, 3])
    np.testing.assert_array_equal(v.v_from[6], [0, 0, 2, 3])


def test_schedules_and_configurations_stack_on_leading_axes():
    rw = ia.noop(TABLE, 2)
    active = ia.perturb(rw, TABLE, [0], "U")
    sched = ia.over_steps(active, 5, window=(1, 3))
    assert sched.lead_shape == (5,)
    np.testing.assert_array_equal(sched.mix[:, 0, 0, 2], [0, 1, 1, 0, 0])
    configs = ia.stack([rw, active, sched[2]])
    assert configs.q_from.shape == (3, 8, 2)
    ia.validate(configs, TABLE)
    with pytest.raises(RewiringError, match="leading axes"):
        configs.site(0)
    with pytest.raises(RewiringError, match="step window"):
        ia.over_steps(active, 5, window=(3, 9))
    with pytest.raises(RewiringError, match="different shapes"):
        ia.stack([rw, ia.noop(TABLE, 3)])


def test_rewiring_is_a_pytree_that_jit_and_vmap_accept():
    rw = ia.perturb(ia.noop(TABLE, 2), TABLE, [0], "I")
    leaves = jax.tree_util.tree_leaves(rw)
    assert len(leaves) == 4
    doubled = jax.jit(lambda r: jax.tree_util.tree_map(lambda x: x * 2, r))(rw.device())
    assert isinstance(doubled, ia.Rewiring)
    sliced = jax.vmap(lambda r: r.mix[0, 0])(ia.stack([rw, rw]).device())
    np.testing.assert_array_equal(np.asarray(sliced), [[0, 1, 0], [0, 1, 0]])


def test_invalid_requests_raise_errors_a_user_can_act_on():
    rw = ia.noop(TABLE, 2)
    with pytest.raises(RewiringError, match="identity map I needs self-attention") as e:
        ia.perturb(rw, TABLE, TABLE.select(block="mid"), "I")
    assert "mid_block.attentions.0.transformer_blocks.0.attn2" in str(e.value)
    with pytest.raises(RewiringError, match="unknown perturbation mode"):
        ia.perturb(rw, TABLE, [0], "X")
    with pytest.raises(RewiringError, match=r"α must be in \[0, 1\]"):
        ia.perturb(rw, TABLE, [0], 1.5)
    with pytest.raises(RewiringError, match=r"row index \[2\] out of range: the batch has 2 rows"):
        ia.perturb(rw, TABLE, [0], "U", rows=[2])
    with pytest.raises(RewiringError, match=r"row index \[5\] out of range"):
        ia.inject(rw, TABLE, [0], src=[5], dst=[1])
    with pytest.raises(RewiringError, match="as many source rows as target rows"):
        ia.inject(rw, TABLE, [0], src=[0, 1], dst=[1])
    with pytest.raises(RewiringError, match="what='qkv'"):
        ia.inject(rw, TABLE, [0], src=0, dst=1, what="qkv")
    with pytest.raises(SiteError, match=r"site index 8 out of range: the model has 8 sites"):
        ia.perturb(rw, TABLE, [8], "U")
    with pytest.raises(SiteError, match="unknown site 'nope'"):
        ia.perturb(rw, TABLE, ["nope"], "U")


def test_validate_catches_wrong_shapes_dtypes_and_indices():
    rw = ia.noop(TABLE, 2)
    import dataclasses

    with pytest.raises(RewiringError, match="must be int32"):
        ia.validate(dataclasses.replace(rw, q_from=rw.q_from.astype(np.int64)))
    with pytest.raises(RewiringError, match="must be float32"):
        ia.validate(dataclasses.replace(rw, mix=rw.mix.astype(np.float64)))
    with pytest.raises(RewiringError, match=r"mix must have shape \[8, 2, 3\]"):
        ia.validate(dataclasses.replace(rw, mix=rw.mix[..., :2]))
    with pytest.raises(RewiringError, match="k_from has shape"):
        ia.validate(dataclasses.replace(rw, k_from=rw.k_from[:3]))
    with pytest.raises(RewiringError, match="has 8 sites but the model has 3"):
        ia.validate(rw, SiteTable.build([("a", "cross", 1, 1), ("b", "cross", 1, 1), ("c", "cross", 1, 1)]))
    with pytest.raises(RewiringError, match="has 2 rows but the batch has 4"):
        ia.validate(rw, TABLE, rows=4)
    bad = rw.v_from.copy()
    bad[3, 1] = 7
    with pytest.raises(RewiringError, match=r"v_from\[3, 1\] = 7 is not a row index"):
        ia.validate(dataclasses.replace(rw, v_from=bad))
    mix = rw.mix.copy()
    mix[1, 0] = (0, 1, 0)
    with pytest.raises(RewiringError, match="used at cross-attention sites"):
        ia.validate(dataclasses.replace(rw, mix=mix), TABLE)


def test_site_context_threads_slices_and_collects_records_in_order():
    rng = np.random.default_rng(0)
    rows, frames = 2, 3
    rw = ia.perturb(ia.noop(TABLE, rows), TABLE, [2], "U", rows=[1])
    ctx = ia.SiteContext(TABLE, rows, rw, record="temporal")
    assert ctx.recorded_names == TABLE.names[2:4]
    x = jnp.asarray(rng.normal(size=(rows * frames, 5, 2, 8)), jnp.float32)
    for site in (3, 2, 0):
        out = ctx(site, x, x, x)
    want = ia.attend(x, x, x, rw.device().site(0))[0]
    np.testing.assert_allclose(np.asarray(out), np.asarray(want))
    rec = ctx.records()
    assert rec.entropy.shape == (2, rows)
    own = ia.attend(x, x, x, record=True, rows=rows)[1]
    np.testing.assert_allclose(np.asarray(rec.entropy[0]), np.asarray(own.entropy), rtol=1e-6)
    with pytest.raises(RuntimeError, match="never called"):
        ia.SiteContext(TABLE, rows, record=[4]).records()
    with pytest.raises(RewiringError, match="leading axes"):
        ia.SiteContext(TABLE, rows, ia.stack([rw, rw]))


def test_site_context_active_sites_skip_rewiring_elsewhere_and_refuse_hidden_rewiring():
    rng = np.random.default_rng(1)
    rows = 2
    x = jnp.asarray(rng.normal(size=(rows, 6, 2, 8)), jnp.float32)
    rw = ia.perturb(ia.noop(TABLE, rows), TABLE, [2], "U")
    ctx = ia.SiteContext(TABLE, rows, rw, active=[2])
    np.testing.assert_allclose(np.asarray(ctx(2, x, x, x)), np.broadcast_to(np.asarray(x).mean(1, keepdims=True), x.shape), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ctx(0, x, x, x)), np.asarray(ia.attend(x, x, x)[0]), rtol=1e-6)
    with pytest.raises(RewiringError, match="not in the plan's active sites"):
        ia.SiteContext(TABLE, rows, rw, active=[0])
