"""Schedulers: whole-trajectory parity with diffusers under a deterministic fake denoiser, run inside
``jax.jit(lax.scan(...))``; timesteps, init_noise_sigma and add_noise equal diffusers'; bad configs fail clearly."""
import inspect
import json

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_dpm_cogvideox

from ieadapt_jax.schedulers import (
    SchedulerError,
    add_noise,
    initial_carry,
    load_scheduler_config,
    make_schedule,
    scale_model_input,
    step,
)

SHAPE = (2, 4, 3, 8, 8)  # [B, C, F, H, W] a small video latent
TOL = 2e-5  # measured: ≤5e-6 everywhere (fp32 round-off over the whole trajectory)

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
# The AnimateDiff recipe: DDIM on SD1.5's config, linear betas, linspace, offset 1
# (diffusers docs, api/pipelines/animatediff.md).
ANIMATEDIFF_DDIM = dict(
    _class_name="DDIMScheduler", beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="linspace",
)
COGVIDEOX_5B = dict(
    SD, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
    set_alpha_to_one=True, clip_sample=False, snr_shift_scale=1.0, steps_offset=0,
)


def fake_torch(x: torch.Tensor, t) -> torch.Tensor:
    """A smooth deterministic stand-in for the denoiser (the formula of fake_jax): roughly the noise's share
    of x, so that ε- and v-trajectories stay O(1) and absolute errors mean something."""
    t = torch.tensor(float(t), dtype=torch.float32) / 1000
    return 0.9 * torch.sqrt(t) * x + 0.2 * torch.sin(x + t)


def fake_jax(x: jax.Array, t: jax.Array) -> jax.Array:
    t = jnp.asarray(t, jnp.float32) / 1000
    return 0.9 * jnp.sqrt(t) * x + 0.2 * jnp.sin(x + t)


def sample(schedule, x_t, per_step):
    """The whole loop as one jitted scan. per_step: [n, *SHAPE] noise or [n] keys, one per step."""

    def body(state, inputs):
        x, carry = state
        i, key_or_noise = inputs
        out = fake_jax(scale_model_input(schedule, i, x), schedule.timesteps[i])
        return step(schedule, i, x, out, carry, key_or_noise), None

    x = x_t * schedule.init_noise_sigma
    (x, _), _ = jax.lax.scan(body, (x, initial_carry(schedule, x)), (jnp.arange(schedule.num_steps), per_step))
    return x


sample_jax = jax.jit(sample)


def start(seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def no_noise(n):
    return jax.random.split(jax.random.key(0), n)  # ignored by deterministic schedules


def sample_torch(scheduler, x_t, n, **step_kwargs):
    scheduler.set_timesteps(n)
    x = torch.from_numpy(x_t) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = fake_torch(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x.numpy()


def check_parity(cls, config, n, **step_kwargs):
    scheduler = cls(**config)
    schedule = make_schedule(dict(scheduler.config, _class_name=cls.__name__), n)
    x_t = start()
    ref = sample_torch(scheduler, x_t, n, **step_kwargs)
    np.testing.assert_array_equal(np.asarray(schedule.timesteps), scheduler.timesteps.numpy())
    np.testing.assert_allclose(float(schedule.init_noise_sigma), float(scheduler.init_noise_sigma), rtol=1e-6)
    ours = np.asarray(sample_jax(schedule, jnp.asarray(x_t), no_noise(n)))
    assert np.isfinite(ref).all()
    err = np.abs(ours - ref).max()
    assert err <= TOL, f"{cls.__name__} {config}: max-abs error {err:.2e}"
    print(f"{cls.__name__} n={n}: max-abs error {err:.2e}, max |x| {np.abs(ref).max():.2f}")
    return schedule


@pytest.mark.parametrize(
    "config, n",
    [
        (ANIMATEDIFF_DDIM, 25),
        (dict(SD, steps_offset=1, set_alpha_to_one=False, clip_sample=False), 50),  # SD1.5, default leading
        (dict(SD, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing"), 30),
        (dict(clip_sample=True, clip_sample_range=1.5), 20),  # diffusers' bare defaults: linear 1e-4..0.02
    ],
    ids=["animatediff-linspace", "sd-leading", "v-zero-snr-trailing", "defaults-clip"],
)
def test_ddim_trajectory_matches_diffusers(config, n):
    config = {k: v for k, v in config.items() if k != "_class_name"}
    check_parity(diffusers.DDIMScheduler, config, n)


def test_ddim_animatediff_timesteps_and_prev_quirk():
    schedule = make_schedule(ANIMATEDIFF_DDIM, 25)
    ts = np.asarray(schedule.timesteps)
    assert ts[:3].tolist() == [999, 957, 916] and ts[-2:].tolist() == [42, 0]
    leading = make_schedule({**ANIMATEDIFF_DDIM, "timestep_spacing": "leading"}, 25)
    assert np.asarray(leading.timesteps)[[0, 1, -1]].tolist() == [961, 921, 1]
    # ᾱ_prev at t - 1000//25 = t - 40 even though the linspace grid step is ~41.6
    ac = np.asarray(schedule.alphas_cumprod)
    np.testing.assert_allclose(np.asarray(schedule.coefs["sqrt_a_next"])[1], np.sqrt(ac[957 - 40]), rtol=1e-6)


def test_ddim_eta_with_injected_noise_matches_diffusers():
    n, eta = 20, 0.7
    config = dict(SD, steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    scheduler = diffusers.DDIMScheduler(**config)
    scheduler.set_timesteps(n)
    noise = np.random.default_rng(1).standard_normal((n, *SHAPE)).astype(np.float32)
    x_t = start()
    x = torch.from_numpy(x_t)
    for k, t in enumerate(scheduler.timesteps):
        x = scheduler.step(fake_torch(x, t), t, x, eta=eta, variance_noise=torch.from_numpy(noise[k])).prev_sample
    schedule = make_schedule(dict(scheduler.config, _class_name="DDIMScheduler"), n, eta=eta)
    assert schedule.stochastic
    ours = np.asarray(sample_jax(schedule, jnp.asarray(x_t), jnp.asarray(noise)))
    err = np.abs(ours - x.numpy()).max()
    assert err <= TOL
    print(f"DDIMScheduler eta={eta} n={n}: max-abs error {err:.2e}, max |x| {np.abs(x.numpy()).max():.2f}")
    keyed = sample_jax(schedule, jnp.asarray(x_t), no_noise(n))
    assert np.isfinite(np.asarray(keyed)).all() and np.abs(np.asarray(keyed) - ours).max() > 1e-2


@pytest.mark.parametrize(
    "config, n",
    [
        (dict(SD, steps_offset=1, set_alpha_to_one=False, clip_sample=False), 25),
        (dict(SD, prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=True), 20),
    ],
    ids=["sd-leading", "v-trailing-clip"],
)
def test_ddim_inverse_trajectory_matches_diffusers(config, n):
    schedule = check_parity(diffusers.DDIMInverseScheduler, config, n)
    assert np.all(np.diff(np.asarray(schedule.timesteps)) > 0)


@pytest.mark.parametrize(
    "config, n, sigma",
    [
        (dict(SD), 25, 14.6146),
        (dict(beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"), 20, 25.1461),
        (dict(SD, timestep_spacing="leading", steps_offset=1, final_sigmas_type="sigma_min"), 15, None),
    ],
    ids=["sd-linspace", "linear-v", "leading-sigma-min"],
)
def test_euler_trajectory_matches_diffusers(config, n, sigma):
    schedule = check_parity(diffusers.EulerDiscreteScheduler, config, n)
    assert schedule.timesteps.dtype == jnp.float32
    if sigma is not None:
        assert abs(float(schedule.init_noise_sigma) - sigma) < 1e-3


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_cogvideox_ddim_trajectory_matches_diffusers(shift):
    schedule = check_parity(diffusers.CogVideoXDDIMScheduler, dict(COGVIDEOX_5B, snr_shift_scale=shift), 50)
    ts = np.asarray(schedule.timesteps)
    assert ts[:2].tolist() == [999, 979] and ts[-1] == 19
    assert float(schedule.alphas_cumprod[-1]) == 0.0  # zero terminal SNR on ᾱ


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_cogvideox_dpm_trajectory_matches_diffusers_with_torch_noise(shift, monkeypatch):
    n = 50
    scheduler = diffusers.CogVideoXDPMScheduler(**dict(COGVIDEOX_5B, snr_shift_scale=shift))
    scheduler.set_timesteps(n)
    draws = []
    generator = torch.Generator().manual_seed(0)

    def recording_randn(shape, generator=None, device=None, dtype=None):
        draws.append(torch.randn(shape, generator=generator, dtype=dtype))
        return draws[-1]

    monkeypatch.setattr(scheduling_dpm_cogvideox, "randn_tensor", recording_randn)
    x_t = start()
    x, old, used = torch.from_numpy(x_t), None, []
    timesteps = scheduler.timesteps
    for k, t in enumerate(timesteps):
        back = timesteps[k - 1] if k > 0 else None
        x, old = scheduler.step(fake_torch(x, t), old, t, back, x, generator=generator, return_dict=False)
        used.append(draws[-1].numpy())  # a 2nd-order step draws twice and uses the second draw
    assert len(draws) == 2 * n - 2  # z1 every step, z2 on the 48 second-order steps
    schedule = make_schedule(dict(scheduler.config, _class_name="CogVideoXDPMScheduler"), n)
    ours = np.asarray(sample_jax(schedule, jnp.asarray(x_t), jnp.asarray(np.stack(used))))
    assert np.isfinite(x.numpy()).all()
    err = np.abs(ours - x.numpy()).max()
    assert err <= TOL
    print(f"CogVideoXDPMScheduler n={n}: max-abs error {err:.2e}, max |x| {np.abs(x.numpy()).max():.2f}")
    assert all(np.isfinite(np.asarray(v)).all() for v in schedule.coefs.values())


def test_cogvideox_dpm_with_keys_is_deterministic_and_key_dependent():
    schedule = make_schedule(dict(COGVIDEOX_5B, _class_name="CogVideoXDPMScheduler"), 10)
    x_t = jnp.asarray(start())
    keys = jax.random.split(jax.random.key(3), 10)
    a, b = sample_jax(schedule, x_t, keys), sample_jax(schedule, x_t, keys)
    c = sample_jax(schedule, x_t, jax.random.split(jax.random.key(4), 10))
    assert np.array_equal(np.asarray(a), np.asarray(b)) and np.isfinite(np.asarray(a)).all()
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_table_values_do_not_recompile():
    run = jax.jit(lambda *args: sample(*args))
    x_t = jnp.asarray(start())
    for beta_end in (0.012, 0.015):
        run(make_schedule({**ANIMATEDIFF_DDIM, "beta_end": beta_end}, 12), x_t, no_noise(12))
    assert run._cache_size() == 1


def test_add_noise_matches_diffusers_ddim():
    scheduler = diffusers.DDIMScheduler(**SD)
    schedule = make_schedule(dict(scheduler.config, _class_name="DDIMScheduler"), 25)
    rng = np.random.default_rng(2)
    x0, noise = rng.standard_normal(SHAPE).astype(np.float32), rng.standard_normal(SHAPE).astype(np.float32)
    t = np.array([3, 871])
    ref = scheduler.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)).numpy()
    ours = jax.jit(add_noise)(schedule, jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t, jnp.int32))
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-6)


def test_add_noise_matches_diffusers_euler_at_schedule_timesteps():
    scheduler = diffusers.EulerDiscreteScheduler(**SD)
    scheduler.set_timesteps(25)
    schedule = make_schedule(dict(scheduler.config, _class_name="EulerDiscreteScheduler"), 25)
    rng = np.random.default_rng(3)
    x0, noise = rng.standard_normal(SHAPE).astype(np.float32), rng.standard_normal(SHAPE).astype(np.float32)
    t = scheduler.timesteps[[0, 13]]
    ref = scheduler.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), t).numpy()
    ours = add_noise(schedule, jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t.numpy()))
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "config, kwargs, match",
    [
        (dict(_class_name="PNDMScheduler"), {}, "PNDMScheduler"),
        (dict(_class_name="DDIMScheduler", thresholding=True), {}, "thresholding"),
        (dict(_class_name="DDIMScheduler", prediction_type="sample"), {}, "prediction_type"),
        (dict(_class_name="DDIMScheduler", timestep_spacing="karras"), {}, "timestep_spacing"),
        (dict(_class_name="DDIMScheduler", beta_schedule="sigmoid"), {}, "beta_schedule"),
        (dict(_class_name="DDIMScheduler", steps_offset=100), {}, "steps_offset"),
        (dict(_class_name="DDIMInverseScheduler", timestep_spacing="linspace"), {}, "timestep_spacing"),
        (dict(_class_name="EulerDiscreteScheduler", use_karras_sigmas=True), {}, "use_karras_sigmas"),
        (dict(_class_name="EulerDiscreteScheduler", interpolation_type="log_linear"), {}, "interpolation_type"),
        (dict(_class_name="EulerDiscreteScheduler"), dict(s_churn=1.0), "s_churn"),
        (dict(_class_name="EulerDiscreteScheduler"), dict(eta=0.5), "eta"),
        (dict(_class_name="CogVideoXDPMScheduler"), dict(eta=1.0), "eta"),
        (dict(_class_name="DDIMScheduler"), dict(num_steps=0), "num_steps"),
    ],
)
def test_bad_configs_raise_clear_errors(config, kwargs, match):
    kwargs = {"num_steps": 10, **kwargs}
    with pytest.raises(SchedulerError, match=match):
        make_schedule(config, **kwargs)


def test_stochastic_step_needs_key_or_noise_of_the_right_shape():
    schedule = make_schedule(dict(COGVIDEOX_5B, _class_name="CogVideoXDPMScheduler"), 10)
    x = jnp.zeros(SHAPE)
    with pytest.raises(SchedulerError, match="PRNG key"):
        step(schedule, 0, x, x, initial_carry(schedule, x))
    with pytest.raises(SchedulerError, match="noise shape"):
        step(schedule, 0, x, x, initial_carry(schedule, x), jnp.zeros((2, 4)))


def test_load_scheduler_config(tmp_path):
    config = dict(ANIMATEDIFF_DDIM)
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    for path in (tmp_path, tmp_path / "scheduler", tmp_path / "scheduler" / "scheduler_config.json"):
        assert load_scheduler_config(path) == config
    with pytest.raises(SchedulerError, match="no scheduler config"):
        load_scheduler_config(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(SchedulerError, match="cannot parse"):
        load_scheduler_config(tmp_path / "bad.json")


def test_defaults_are_diffusers_constructor_defaults():
    from ieadapt_jax.schedulers import DEFAULTS

    for class_name, defaults in DEFAULTS.items():
        params = inspect.signature(getattr(diffusers, class_name).__init__).parameters.values()
        assert defaults == {p.name: p.default for p in params if p.name not in ("self", "kwargs")}, class_name
