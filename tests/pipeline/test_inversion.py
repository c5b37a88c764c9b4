"""DDIM inversion: the inverse schedule against diffusers' DDIMInverseScheduler, the inversion run against a
hand-written loop, the drive trajectory's order, and clear errors."""
import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ieadapt_jax as ia
from ieadapt_jax.core import make_forward
from ieadapt_jax.inversion import InversionError, inverse_schedule, invert
from ieadapt_jax.sampling import Drive, SamplingError, make_plan, sample
from ieadapt_jax.schedulers import make_schedule, step

ATOL = 1e-5
LOOP_ATOL = 5e-5  # a compiled loop vs a Python loop of compiled forwards: float32 reassociation
BASE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False)


@pytest.mark.parametrize("extra", [dict(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False),
                                   dict(timestep_spacing="leading", steps_offset=0, set_alpha_to_one=True),
                                   dict(timestep_spacing="trailing", set_alpha_to_one=False)])
def test_inverse_schedule_steps_like_diffusers_ddim_inverse(extra):
    """For leading/trailing spacings the mirrored forward DDIM is diffusers' DDIMInverseScheduler, step for step."""
    n = 10
    config = {**BASE, **extra}
    forward = make_schedule({**config, "_class_name": "DDIMScheduler"}, n)
    ours = inverse_schedule(forward)
    reference = diffusers.DDIMInverseScheduler(**config)
    reference.set_timesteps(n)
    np.testing.assert_array_equal(ours.timesteps, reference.timesteps.numpy())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    ref_x = torch.as_tensor(x)
    for i, t in enumerate(reference.timesteps):
        eps = rng.standard_normal(x.shape).astype(np.float32)
        ref_x = reference.step(torch.as_tensor(eps), t, ref_x).prev_sample
        x, _ = step(ours, i, jnp.asarray(x), jnp.asarray(eps))
        np.testing.assert_allclose(x, ref_x.numpy(), atol=ATOL, rtol=1e-5)


def test_inverse_schedule_mirrors_any_spacing():
    """linspace spacing (the toy model's): inverse step n-1-i undoes forward step i exactly for a fixed ε."""
    config = {**BASE, "_class_name": "DDIMScheduler", "timestep_spacing": "linspace", "steps_offset": 1,
              "set_alpha_to_one": False}
    forward = make_schedule(config, 7)
    inverse = inverse_schedule(forward)
    np.testing.assert_array_equal(inverse.timesteps, forward.timesteps[::-1])
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    eps = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    for i in range(7):
        there, _ = step(forward, i, x, eps)
        back, _ = step(inverse, 6 - i, there, eps)
        np.testing.assert_allclose(back, x, atol=ATOL)


COGVIDEOX = {**BASE, "_class_name": "CogVideoXDDIMScheduler", "set_alpha_to_one": True, "snr_shift_scale": 3.0}


@pytest.mark.parametrize("config", [
    dict(COGVIDEOX, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing"),  # 2B/5B
    dict(COGVIDEOX, prediction_type="epsilon", timestep_spacing="leading"),
    dict(BASE, _class_name="DDIMScheduler", prediction_type="v_prediction", timestep_spacing="trailing"),
], ids=["cogvideox-v-zero-snr", "cogvideox-epsilon", "ddim-v"])
def test_inverse_step_undoes_the_forward_step_for_the_same_output(config):
    """v-prediction and CogVideoX DDIM: inverse step n-1-i maps forward step i's end back to its start exactly when
    the model's output is the same (also from ᾱ = 0, the zero-terminal-SNR first step). diffusers'
    DDIMInverseScheduler reads v at the sample's level instead and misses by O(Δθ²) per step."""
    n = 7
    forward = make_schedule(config, n)
    inverse = inverse_schedule(forward)
    np.testing.assert_array_equal(inverse.timesteps, forward.timesteps[::-1])
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    out = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    for i in range(n):
        there, _ = step(forward, i, x, out)
        back, _ = step(inverse, n - 1 - i, there, out)
        np.testing.assert_allclose(back, x, atol=ATOL)
    if config["_class_name"] == "DDIMScheduler":  # same ᾱ and timesteps as DDIMInverseScheduler
        reference = diffusers.DDIMInverseScheduler(**{k: v for k, v in config.items() if k != "_class_name"})
        reference.set_timesteps(n)
        there, _ = step(forward, n - 2, x, out)
        back = reference.step(torch.tensor(np.array(out)), reference.timesteps[1], torch.tensor(np.array(there)))
        assert np.abs(back.prev_sample.numpy() - np.asarray(x)).max() > 1e-3


def test_only_deterministic_ddim_inverts():
    with pytest.raises(InversionError, match="EulerDiscreteScheduler"):
        inverse_schedule(make_schedule({**BASE, "_class_name": "EulerDiscreteScheduler"}, 4))
    with pytest.raises(InversionError, match="eta > 0"):
        inverse_schedule(make_schedule({**BASE, "_class_name": "DDIMScheduler"}, 4, eta=0.5))
    with pytest.raises(InversionError, match="CogVideoXDPMScheduler"):
        inverse_schedule(make_schedule({**COGVIDEOX, "_class_name": "CogVideoXDPMScheduler"}, 4))
    with pytest.raises(InversionError, match="zero terminal SNR needs v-prediction"):
        inverse_schedule(make_schedule({**COGVIDEOX, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, 4))
    with pytest.raises(InversionError, match="needs clip_sample=False"):
        inverse_schedule(make_schedule({**BASE, "_class_name": "DDIMScheduler", "prediction_type": "v_prediction",
                                        "clip_sample": True}, 4))


@pytest.fixture(scope="module")
def tiny():
    return ia.tiny_animatediff(seed=0)


def test_invert_matches_a_hand_written_loop_and_a_driven_video_ends_at_the_input(tiny):
    """Two videos inverted with CFG equal a Python loop of inverse steps; sampling from the inverted noise with
    the drive trajectory gives back x0 exactly (the drive lists forward step i's end = inverse step n-2-i's)."""
    n = 3
    unet = tiny.unet
    schedule = make_schedule(tiny.scheduler_config, n)
    inverse = inverse_schedule(schedule)
    x0 = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 4, 4, 4))  # two videos
    text = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 32))
    uncond = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 32))
    omega = 3.0
    inv = invert(unet, schedule, x0, text, uncond=uncond, guidance_scale=omega, progress=False)
    forward, state = make_forward(unet)
    x, visited = x0, []
    for j in range(n):
        t = jnp.broadcast_to(inverse.timesteps[j], (4,))
        eps, _ = forward(state, jnp.concatenate([x, x]), t, jnp.concatenate([uncond, text]))  # rows [φ_0, φ_1, c_0, c_1]
        x, _ = step(inverse, j, x, eps[:2] + omega * (eps[2:] - eps[:2]))
        visited.append(x)
    np.testing.assert_allclose(inv.noise, visited[-1], atol=LOOP_ATOL)
    expected_drive = [visited[n - 2 - i] for i in range(n - 1)] + [x0]
    np.testing.assert_allclose(inv.drive, jnp.stack(expected_drive), atol=LOOP_ATOL)

    plan = make_plan(unet, [0, 1], progress=False, trajectory=True)  # video 0 driven, video 1 free
    start = jnp.stack([inv.noise[0], inv.noise[0]])
    out = sample(unet, plan, schedule, start, jnp.stack([text[0], text[0]]), np.eye(2, dtype=np.float32),
                 drive=Drive([0], inv.drive[:, :1]))
    np.testing.assert_array_equal(out.latents[0], x0[0])
    np.testing.assert_array_equal(out.trajectory[:, 0], inv.drive[:, 0])
    x = jnp.concatenate([start, start])
    for i in range(n):  # the free video is a plain DDIM run (batch 4 like the loop above: one compiled forward)
        eps, _ = forward(state, x, jnp.broadcast_to(schedule.timesteps[i], (4,)), jnp.stack([text[0]] * 4))
        x, _ = step(schedule, i, x, eps)
    np.testing.assert_allclose(out.latents[1], x[1], atol=1e-4, rtol=1e-5)

    with pytest.raises(InversionError, match="uncond"):
        invert(unet, schedule, x0, text, guidance_scale=2.0, progress=False)
    with pytest.raises(InversionError, match=r"text must be \[V=2"):
        invert(unet, schedule, x0, text[:1], progress=False)
    with pytest.raises(SamplingError, match="drive.latents must be"):
        sample(unet, plan, schedule, start, jnp.stack([text[0], text[0]]), np.eye(2, dtype=np.float32),
               drive=Drive([0], inv.drive))
