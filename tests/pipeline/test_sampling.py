"""The sampling loop, IE-Adapt guidance presets, Eq. 3 profiling and the text-to-video API on a tiny model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ieadapt_jax as ia
from ieadapt_jax import sampling
from ieadapt_jax.core import make_forward
from ieadapt_jax.guidance import GuidanceError, guidance_rows, register_sites
from ieadapt_jax.pipeline import PipelineError
from ieadapt_jax.schedulers import make_schedule, scale_model_input, step

SMALL = dict(num_frames=4, height=16, width=16, num_inference_steps=3, progress=False)
W, L = 7.5, 2.0
uA, cA, cI, cU, uI = ("uncond", "A"), ("cond", "A"), ("cond", "I"), ("cond", "U"), ("uncond", "I")


@pytest.fixture(scope="module")
def tiny():
    return ia.tiny_animatediff(seed=0)


# Hand-expanded Eq. 5 / Eq. 6 with ω = 7.5, λ = 2: identical rows merged, zero weights dropped.
TABLE = {
    "cfg": ([uA, cA], [1 - W, W]),
    "A-I": ([uA, cA, cI], [1 - W, W + L, -L]),
    "pag": ([uA, cA, cI], [1 - W, W + L, -L]),
    "strategy2": ([uA, cA, cI], [1 - W, W + L, -L]),
    "U-A": ([uA, cA, cU], [1 - W, W - L, L]),
    "U-I": ([uA, cA, cU, cI], [1 - W, W, L, -L]),
    "strategy1": ([uA, cA, uI], [1, W, -W]),
    "strategy3": ([uA, cU, cA, cI], [1 - W, W, L, -L]),
    "strategy4": ([uA, cU], [1 - W, W]),
}


@pytest.mark.parametrize("preset", sorted(TABLE))
def test_presets_give_the_rows_and_weights_of_eq5_and_eq6(preset):
    rows, weights = guidance_rows(preset, W, L)
    assert list(rows) == TABLE[preset][0]
    np.testing.assert_array_equal(weights, np.asarray(TABLE[preset][1], np.float32))
    assert len(set(rows)) == len(rows)
    assert weights.sum() == pytest.approx(1.0)


def test_rows_of_weight_zero_are_not_computed():
    assert guidance_rows("cfg", 1.0) == ((cA,), np.asarray([1.0], np.float32))
    rows, _ = guidance_rows("U-I", W, 0.0)
    assert rows == (uA, cA)
    rows, weights = guidance_rows("U-A", 3.0, 3.0)  # ε(c,A) cancels
    assert rows == (uA, cU) and list(weights) == [-2.0, 3.0]


def test_loop_matches_a_hand_written_loop_for_two_videos(tiny):
    """V=2 videos, R=3 rows (row_video [0, 1, 1]), a rewired row, a general W: the scan equals a Python loop."""
    unet, table = tiny.unet, tiny.unet.site_table
    schedule = make_schedule(tiny.scheduler_config, 2)
    latents = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 4, 4))
    text = jax.random.normal(jax.random.PRNGKey(2), (3, 5, 32))
    weights = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.5, -0.5]])
    site = table.select(kind="spatial_self")[0]
    rw = ia.perturb(ia.noop(table, 3), table, [site], "I", rows=[2])
    plan = ia.make_plan(unet, [0, 1, 1], active=[site], progress=False)
    out = ia.sample(unet, plan, schedule, latents, text, weights, rw)

    forward, state = make_forward(unet)
    x = latents
    for i in range(2):
        x_rows = scale_model_input(schedule, i, x[jnp.asarray([0, 1, 1])])
        eps_rows, _ = forward(state, x_rows, jnp.full((3,), schedule.timesteps[i]), text, rw)
        x, _ = step(schedule, i, x, jnp.einsum("vr,r...->v...", weights, eps_rows))
    np.testing.assert_allclose(out.latents, x, atol=2e-5)


def test_rewiring_and_weights_change_without_retracing_and_records_per_step(tiny):
    unet, table = tiny.unet, tiny.unet.site_table
    schedule = make_schedule(tiny.scheduler_config, 3)
    latents = jax.random.normal(jax.random.PRNGKey(1), (1, 4, 4, 4, 4))
    text = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 32))
    sites = table.select(kind="temporal")[:2]
    plan = ia.make_plan(unet, [0, 0], record="self", active=sites, progress=False)
    before = sampling._span.pure._cache_size()
    outs = []
    for mode, w in (("I", 0.3), ("U", 0.7), (0.5, 0.3)):
        rw = ia.over_steps(ia.perturb(ia.noop(table, 2), table, sites, mode, rows=[1]), 3, (0, 2))
        outs.append(ia.sample(unet, plan, schedule, latents, text, jnp.asarray([[1 - w, w]]), rw))
    assert sampling._span.pure._cache_size() == before + 1
    assert not np.allclose(outs[0].latents, outs[1].latents)
    n_self = len(table.select(kind="self"))
    assert outs[0].records.entropy.shape == (3, n_self, 2)
    assert outs[0].record_sites == tuple(table[s].name for s in table.select(kind="self"))
    assert np.all((outs[0].records.entropy >= 0) & (outs[0].records.entropy <= 1 + 1e-6))


def test_sampling_inputs_are_checked(tiny):
    unet, table = tiny.unet, tiny.unet.site_table
    schedule = make_schedule(tiny.scheduler_config, 2)
    latents = jnp.zeros((1, 4, 4, 4, 4))
    text = jnp.zeros((2, 5, 32))
    plan = ia.make_plan(unet, [0, 0], active=table.select(kind="temporal")[:1], progress=False)
    with pytest.raises(ia.SamplingError, match=r"weights must be \[V=1, R=2\]"):
        ia.sample(unet, plan, schedule, latents, text, jnp.ones((2, 2)))
    with pytest.raises(ia.SamplingError, match="names videos"):
        ia.sample(unet, ia.make_plan(unet, [0, 3]), schedule, latents, text, jnp.ones((1, 2)))
    with pytest.raises(ia.SamplingError, match=r"row_text must be \[R=2"):
        ia.sample(unet, plan, schedule, latents, text[:1], jnp.ones((1, 2)))
    outside = ia.perturb(ia.noop(table, 2), table, table.select(kind="spatial_self")[:1], "I", rows=[1])
    with pytest.raises(ia.RewiringError, match="not in the plan's active sites"):
        ia.sample(unet, plan, schedule, latents, text, jnp.ones((1, 2)), outside)
    with pytest.raises(ia.SamplingError, match=r"\[steps=2, sites, rows\]"):
        ia.sample(unet, plan, schedule, latents, text, jnp.ones((1, 2)), ia.over_steps(ia.noop(table, 2), 3))


def test_eq3_registers_the_max_entropy_self_site(tiny):
    unet, table = tiny.unet, tiny.unet.site_table
    result = ia.text_to_video(tiny, "a cat", guidance=ia.Guidance("U-I", scale=1.0), **SMALL)
    entropy = result.entropy_profile
    self_sites = table.select(kind="self")
    assert np.all(np.isnan(np.delete(entropy, self_sites))) and not np.any(np.isnan(entropy[self_sites]))
    best = self_sites[int(np.argmax(entropy[self_sites]))]
    assert result.sites == (table[best].name,)

    # the profile is one recording forward of the conditional row at the first step
    schedule = make_schedule(tiny.scheduler_config, 3)
    noise = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 8, 8, 4))
    ids = jnp.asarray(ia.pipeline.tokenize(tiny.tokenizer, ["a cat"]))
    text = tiny.text_encoder.prompt_embeds(ids)
    x0 = scale_model_input(schedule, 0, noise * schedule.init_noise_sigma)
    forward, state = make_forward(unet, record="self")
    _, rec = forward(state, x0, schedule.timesteps[:1], text)
    np.testing.assert_allclose(entropy[self_sites], rec.entropy[:, 0], atol=1e-6)
    spatial = table.select(kind="spatial_self")
    best_spatial = spatial[int(np.argmax(entropy[spatial]))]
    assert register_sites(table, ia.Guidance("A-I", kind="spatial_self"), entropy) == (best_spatial,)


def test_text_to_video_is_deterministic_and_guidance_changes_it(tiny):
    a = ia.text_to_video(tiny, "a dog", seed=3, **SMALL)
    b = ia.text_to_video(tiny, "a dog", seed=3, **SMALL)
    c = ia.text_to_video(tiny, "a dog", seed=4, **SMALL)
    np.testing.assert_array_equal(a.latents, b.latents)
    np.testing.assert_array_equal(a.video, b.video)
    assert not np.allclose(a.latents, c.latents)
    assert a.video.shape == (4, 16, 16, 3) and a.video.dtype == np.uint8
    assert a.rows == (uA, cA) and a.sites == ()
    site = tiny.unet.site_table.select(kind="temporal")[0]
    guided = ia.text_to_video(tiny, "a dog", seed=3, guidance=ia.Guidance("U-I", 2.0, sites=[site]), **SMALL)
    assert not np.allclose(guided.latents, a.latents)
    # a window that ends before the first step... is impossible; one covering no perturbed step is plain CFG
    late = ia.text_to_video(tiny, "a dog", seed=3, guidance=ia.Guidance("U-I", 2.0, sites=[site], window=(2, 3)), **SMALL)
    early = ia.text_to_video(tiny, "a dog", seed=3, guidance=ia.Guidance("U-I", 2.0, sites=[site], window=(0, 3)), **SMALL)
    np.testing.assert_allclose(early.latents, guided.latents, atol=1e-5)
    assert not np.allclose(late.latents, guided.latents)


def test_progress_bar_ticks_once_per_step(tiny, capsys):
    ia.text_to_video(tiny, "a cat", **{**SMALL, "progress": True})
    assert "3/3" in capsys.readouterr().err


def test_bad_inputs_are_explained(tiny):
    table = tiny.unet.site_table
    with pytest.raises(GuidanceError, match="unknown guidance preset 'U-X'"):
        ia.Guidance("U-X")
    with pytest.raises(GuidanceError, match="registers no site"):
        ia.Guidance("U-I", sites=[])
    with pytest.raises(GuidanceError, match=r"window \(1, 5\) must satisfy 0 <= start < stop <= 3"):
        ia.text_to_video(tiny, "a cat", guidance=ia.Guidance("U-I", sites=[0], window=(1, 5)), **SMALL)
    with pytest.raises(ia.RewiringError, match="cross-attention"):
        ia.text_to_video(tiny, "a cat", guidance=ia.Guidance("U-I", sites=table.select(kind="cross")[:1]), **SMALL)
    with pytest.raises(PipelineError, match="has 81 tokens"):
        ia.text_to_video(tiny, "a" * 78 + " cat", **SMALL)
    with pytest.raises(PipelineError, match="multiples of 4"):
        ia.text_to_video(tiny, "a cat", **{**SMALL, "height": 18})
    with pytest.raises(PipelineError, match="either rewiring"):
        ia.text_to_video(tiny, "a cat", rewiring=ia.noop(table, 2), guidance=ia.Guidance(), **SMALL)
    with pytest.raises(PipelineError, match="rewiring has 3 rows"):
        ia.text_to_video(tiny, "a cat", rewiring=ia.noop(table, 3), **SMALL)
    with pytest.raises(PipelineError, match=r"latents must be \[F, h, w, C\]"):
        ia.text_to_video(tiny, "a cat", latents=np.zeros((4, 4, 4, 4)), **SMALL)
    with pytest.raises(ia.SiteError, match="unknown site"):
        ia.text_to_video(tiny, "a cat", guidance=ia.Guidance("A-I", sites=["down_blocks.9.attn1"]), **SMALL)


def test_spans_of_steps_are_bit_identical_to_one_span_and_compile_once(tiny):
    """The loop runs in spans of steps (Ctrl-C is checked between them): any split gives the same bits as one span
    over all steps, records and trajectory included, and no span recompiles."""
    unet, table = tiny.unet, tiny.unet.site_table
    schedule = make_schedule(tiny.scheduler_config, 5)
    latents = jax.random.normal(jax.random.PRNGKey(1), (1, 4, 4, 4, 4))
    text = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 32))
    sites = table.select(kind="temporal")[:2]
    plan = ia.make_plan(unet, [0, 0], record="self", active=sites, progress=False, trajectory=True)
    rw = ia.over_steps(ia.perturb(ia.noop(table, 2), table, sites, "I", rows=[1]), 5, (1, 4))
    weights = jnp.asarray([[-1.0, 2.0]])
    whole = ia.sample(unet, plan, schedule, latents, text, weights, rw, span=5)
    before = sampling._span.pure._cache_size()
    for span in (1, 2, 3):
        split = ia.sample(unet, plan, schedule, latents, text, weights, rw, span=span)
        for a, b in zip(jax.tree_util.tree_leaves((whole.latents, whole.records, whole.trajectory)),
                        jax.tree_util.tree_leaves((split.latents, split.records, split.trajectory))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sampling._span.pure._cache_size() == before
