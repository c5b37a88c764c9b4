"""Editing runs on a tiny random toy model: Algorithm 1's rows, real videos with inversion, masks, the Blend hook."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ieadapt_jax as ia
from ieadapt_jax.core import make_forward
from ieadapt_jax.editing import EditError, edit, edit_batch, encode_text, word_positions
from ieadapt_jax.loading import AnimateDiffComponents
from ieadapt_jax.sampling import Blend, SamplingError, make_plan, sample
from ieadapt_jax.schedulers import make_schedule, step
from ieadapt_jax.toy import world
from ieadapt_jax.toy.model import (
    SCHEDULER_CONFIG,
    PixelSpace,
    ToyTokenizer,
    build_models,
)

SOURCE = "a large red circle moving right on a white background"
TARGET = "a large blue circle moving right on a white background"
SIZE = dict(num_frames=4, height=16, width=16)
RUN = dict(num_inference_steps=2, guidance_scale=5.0, progress=False)


@pytest.fixture(scope="module")
def toy():
    """A tiny random-weight toy model as pipeline components."""
    unet, text_encoder = build_models("tiny")
    return AnimateDiffComponents(unet, PixelSpace(), text_encoder, ToyTokenizer(), dict(SCHEDULER_CONFIG), "tiny")


@pytest.fixture(scope="module")
def plain(toy):
    """The ieadapt edit with default settings."""
    return edit(toy, SOURCE, TARGET, **SIZE, **RUN)


def test_source_is_the_plain_generation_and_target_uses_the_source_maps(toy, plain):
    """Algorithm 1 from primitives: rows [φ, c_src, φ, c_tgt] on one noise, target rows take Q, K of the source rows."""
    reference = ia.text_to_video(toy, SOURCE, seed=0, **SIZE, **RUN)
    np.testing.assert_allclose(plain.source_latents, reference.latents, atol=2e-4)  # 4 rows vs 2 per forward

    table = toy.unet.site_table
    assert plain.sites == tuple(table[s].name for s in plain.site_positions)
    finite = ~np.isnan(plain.entropy)
    assert set(np.flatnonzero(finite)) == set(table.select(kind="self"))
    assert max(plain.entropy[list(plain.site_positions)]) <= np.median(plain.entropy[finite])
    schedule = make_schedule(toy.scheduler_config, 2)
    uncond, (src, tgt) = encode_text(toy, [SOURCE, TARGET])
    rw = ia.inject(ia.noop(table, 4), table, list(plain.site_positions), src=[0, 1], dst=[2, 3], what="qk")
    noise = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))
    out = sample(toy.unet, make_plan(toy.unet, [0, 0, 1, 1], progress=False), schedule, jnp.stack([noise, noise]),
                 jnp.stack([uncond, src, uncond, tgt]), [[-4, 5, 0, 0], [0, 0, -4, 5]], rw)
    np.testing.assert_allclose(plain.edited_latents, out.latents[1], atol=1e-5)
    free = ia.text_to_video(toy, TARGET, seed=0, **SIZE, **RUN)
    assert np.abs(plain.edited_latents - free.latents).max() > 1e-3  # the injection changed the target


def test_blend_hook_mixes_target_and_source_after_every_step(toy):
    unet = toy.unet
    schedule = make_schedule(toy.scheduler_config, 2)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 4, 4, 3))
    text = jax.random.normal(jax.random.PRNGKey(1), (2, world.CONTEXT_LENGTH, 16))
    mask = jax.random.uniform(jax.random.PRNGKey(2), (2, 1, 2, 4, 4, 1))  # [steps, K, F, H, W, 1]
    out = sample(unet, make_plan(unet, [0, 1], progress=False), schedule, x, text, np.eye(2, dtype=np.float32),
                 blend=Blend([1], [0], mask))
    forward, state = make_forward(unet)
    for i in range(2):
        eps, _ = forward(state, x, jnp.broadcast_to(schedule.timesteps[i], (2,)), text)
        x, _ = step(schedule, i, x, eps)
        x = x.at[1].set(mask[i, 0] * x[1] + (1 - mask[i, 0]) * x[0])
    np.testing.assert_allclose(out.latents, x, atol=1e-5)
    with pytest.raises(SamplingError, match=r"blend.target names videos \[2\]"):
        sample(unet, make_plan(unet, [0, 1], progress=False), schedule, x, text, np.eye(2, dtype=np.float32),
               blend=Blend([2], [0], mask))
    with pytest.raises(SamplingError, match="blend needs"):
        sample(unet, make_plan(unet, [0, 1], progress=False), schedule, x, text, np.eye(2, dtype=np.float32),
               blend=Blend([1], [0], mask[:1]))


def test_an_empty_mask_keeps_the_source_and_a_full_one_changes_nothing(toy, plain):
    kept = edit(toy, SOURCE, TARGET, mask=np.zeros((4, 16, 16)), **SIZE, **RUN)
    np.testing.assert_array_equal(kept.edited_latents, kept.source_latents)
    full = edit(toy, SOURCE, TARGET, mask=np.ones((4, 16, 16)), **SIZE, **RUN)
    np.testing.assert_allclose(full.edited_latents, plain.edited_latents, atol=1e-5)
    with pytest.raises(EditError, match=r"mask must be \[F, H, W\] = \[4, 16, 16\]"):
        edit(toy, SOURCE, TARGET, mask=np.ones((4, 8, 8)), **SIZE, **RUN)


def test_real_video_is_inverted_and_the_driven_source_is_exact(toy):
    video = np.asarray(world.to_uint8(world.render(world.parse(SOURCE), jax.random.key(0))))[:4, ::2, ::2]
    driven = edit(toy, SOURCE, TARGET, video=video, **RUN)
    np.testing.assert_array_equal(driven.source_video, video)
    assert driven.metrics == {"vae_psnr": float("inf"), "reconstruction_psnr": float("inf")}
    assert driven.config["real_video"] and driven.config["drive_source"]
    free = edit(toy, SOURCE, TARGET, video=video, drive_source=False, **RUN)
    assert np.isfinite(free.metrics["reconstruction_psnr"])  # random weights: the DDIM reconstruction is poor


def test_word_masks_and_profiles(toy):
    assert word_positions(toy.tokenizer, SOURCE, "red circle") == [3, 4]  # <bos> a large red circle ...
    with pytest.raises(EditError, match="mask word 'square' is not in the source prompt"):
        word_positions(toy.tokenizer, SOURCE, "square")
    schedule = make_schedule(toy.scheduler_config, 2)
    noise = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 16, 16, 3))
    batch = edit_batch(toy, [SOURCE], [TARGET], noise, schedule, mask_words="red", profile="run", guidance_scale=5.0,
                       progress=False)
    assert batch.masks.shape == (1, 4, 16, 16) and set(np.unique(batch.masks)) <= {0.0, 1.0}
    assert batch.masks.max() == 1.0
    table = toy.unet.site_table
    assert set(np.flatnonzero(~np.isnan(batch.entropy[0]))) == set(table.select(kind="self"))


def test_p2p_injects_cross_attention_maps_of_aligned_prompts(toy):
    result = edit(toy, SOURCE, TARGET, method="p2p", **SIZE, **RUN)
    assert set(result.site_positions) == set(toy.unet.site_table.select(kind="cross"))
    with pytest.raises(EditError, match="prompts must align"):
        edit(toy, SOURCE, "a large blue circle bouncing on a white background", method="p2p", **SIZE, **RUN)
