"""Diffusion schedulers in pure JAX, built from a diffusers ``scheduler_config.json``.

Every scheduler is a :class:`Schedule`: a frozen pytree of per-step coefficient tables computed once on
the host in numpy, with diffusers' dtypes (float32 for DDIM / Euler, float64 for the CogVideoX
schedulers), then cast to float32. The step is a pure function of the step number ``i`` (no Python-side
step state), so a whole sampling loop is one ``jax.jit(lax.scan(...))``::

    schedule = make_schedule(load_scheduler_config("snapshot/scheduler"), num_steps=25)
    x = noise * schedule.init_noise_sigma
    carry = initial_carry(schedule, x)

    def body(state, inputs):
        x, carry = state
        i, key = inputs
        out = model(scale_model_input(schedule, i, x), schedule.timesteps[i])
        return step(schedule, i, x, out, carry, key), None

    (x, _), _ = lax.scan(body, (x, carry), (jnp.arange(schedule.num_steps), keys))

Supported diffusers classes: ``DDIMScheduler``, ``DDIMInverseScheduler``, ``EulerDiscreteScheduler``,
``CogVideoXDDIMScheduler`` and ``CogVideoXDPMScheduler``. Quirks kept on purpose, because parity with
diffusers is the point: DDIM-family schedulers look up the previous ᾱ at ``t - num_train // num_steps``
for every spacing (with "linspace" spacing this is not the grid's own previous timestep); CogVideoX's
zero-terminal-SNR rescale acts on ᾱ, not on β; CogVideoX DPM draws fresh noise at every step whatever
eta is. Keys a class does not know (e.g. a PNDM config's ``skip_prk_steps`` loaded as DDIM) are ignored,
as diffusers' ``from_config`` ignores them.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .core.errors import IEAdaptError
from .core.jsonfile import read_json_object

SCHEDULER_CONFIG = "scheduler_config.json"

_COMMON = dict(
    num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
    prediction_type="epsilon", timestep_spacing="leading", steps_offset=0, rescale_betas_zero_snr=False,
)
_CLIP = dict(clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True)
_COG = dict(
    _COMMON, **_CLIP, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    sample_max_value=1.0, snr_shift_scale=3.0,
)
# diffusers' constructor defaults per class (0.42.1): a key missing from the config takes these values.
DEFAULTS: dict[str, dict[str, Any]] = {
    "DDIMScheduler": dict(
        _COMMON, **_CLIP, thresholding=False, dynamic_thresholding_ratio=0.995, sample_max_value=1.0
    ),
    "DDIMInverseScheduler": dict(_COMMON, **_CLIP),
    "EulerDiscreteScheduler": dict(
        _COMMON, timestep_spacing="linspace", interpolation_type="linear", use_karras_sigmas=False,
        use_exponential_sigmas=False, use_beta_sigmas=False, sigma_min=None, sigma_max=None,
        timestep_type="discrete", final_sigmas_type="zero",
    ),
    "CogVideoXDDIMScheduler": _COG,
    "CogVideoXDPMScheduler": _COG,
}
PREDICTION_TYPES = ("epsilon", "v_prediction")


class SchedulerError(IEAdaptError):
    """A scheduler config names an unknown class or an option value this port does not support."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A scheduler for a fixed number of steps: static settings plus float32 per-step tables.

    A pytree: the arrays are leaves (changing their values never recompiles), the strings and flags are
    static. Index every table by the step number ``i`` in [0, num_steps).

    Fields:
        class_name: the diffusers class it reproduces (static).
        kind: the update rule, one of "ddim" (also DDIM inverse), "euler", "cogvideox_ddim",
            "cogvideox_dpm" (static).
        prediction_type: "epsilon" or "v_prediction" (static).
        clip_sample_range: clip x̂₀ to [-r, r], or None for no clipping (static).
        stochastic: whether ``step`` needs a key or noise (DDIM with eta > 0, CogVideoX DPM) (static).
        timesteps: [n] what to feed the model at step i; int32, float32 for Euler.
        init_noise_sigma: [] float32, the scale of the initial noise.
        alphas_cumprod: [num_train_timesteps] float32 ᾱ table of training (used by ``add_noise``).
        coefs: name -> [n] float32 per-step coefficients of ``kind``'s update.
    """

    class_name: str
    kind: str
    prediction_type: str
    clip_sample_range: float | None
    stochastic: bool
    timesteps: jax.Array
    init_noise_sigma: jax.Array
    alphas_cumprod: jax.Array
    coefs: dict[str, jax.Array]

    @property
    def num_steps(self) -> int:
        """The number of denoising steps n."""
        return self.timesteps.shape[0]


jax.tree_util.register_dataclass(
    Schedule,
    data_fields=["timesteps", "init_noise_sigma", "alphas_cumprod", "coefs"],
    meta_fields=["class_name", "kind", "prediction_type", "clip_sample_range", "stochastic"],
)


def load_scheduler_config(path: str | Path) -> dict:
    """Read a diffusers ``scheduler_config.json`` into a dict.

    ``path`` is the json file itself, a ``scheduler/`` folder holding it, or a pipeline snapshot folder
    with a ``scheduler/`` subfolder.
    """
    path = Path(path)
    candidates = [path] if path.is_file() else [path / SCHEDULER_CONFIG, path / "scheduler" / SCHEDULER_CONFIG]
    for file in candidates:
        if file.is_file():
            return read_json_object(file, SchedulerError)
    raise SchedulerError(f"no scheduler config found; tried {', '.join(str(c) for c in candidates)}")


def make_schedule(config: dict, num_steps: int, *, eta: float = 0.0, s_churn: float = 0.0) -> Schedule:
    """Build the :class:`Schedule` of a diffusers scheduler config for ``num_steps`` steps.

    Args:
        config: a ``scheduler_config.json`` dict; ``config["_class_name"]`` picks the scheduler. To run
            another class on a repo's config (e.g. DDIM on SD1.5's PNDM config, as the AnimateDiff docs
            recommend), override it: ``{**config, "_class_name": "DDIMScheduler", "clip_sample": False}``.
        num_steps: number of inference steps (diffusers' ``set_timesteps(num_steps)``).
        eta: DDIMScheduler's step ``eta`` (0 = deterministic DDIM); other classes take only 0.
        s_churn: EulerDiscreteScheduler's step ``s_churn``; only 0 is supported.

    Raises:
        SchedulerError: unknown class, unsupported option value (the message names the option), or a
            bad ``num_steps``.
    """
    class_name = config.get("_class_name")
    if class_name not in DEFAULTS:
        raise SchedulerError(f"unsupported scheduler class {class_name!r}; supported: {', '.join(DEFAULTS)}")
    cfg = {**DEFAULTS[class_name], **{k: v for k, v in config.items() if k in DEFAULTS[class_name]}}
    if class_name == "DDIMInverseScheduler" and config.get("set_alpha_to_zero") is not None:
        cfg["set_alpha_to_one"] = config["set_alpha_to_zero"]  # diffusers' deprecated alias
    n_train = int(cfg["num_train_timesteps"])
    if not 1 <= num_steps <= n_train:
        raise SchedulerError(f"num_steps={num_steps} must be in [1, num_train_timesteps={n_train}]")
    _check(cfg, "prediction_type", PREDICTION_TYPES)
    if eta != 0.0 and class_name != "DDIMScheduler":
        raise SchedulerError(f"eta={eta}: only DDIMScheduler takes eta (diffusers' {class_name} ignores or lacks it)")
    if eta < 0.0:
        raise SchedulerError(f"eta={eta} must be >= 0")
    if s_churn != 0.0:
        raise SchedulerError(f"s_churn={s_churn} is not supported: only EulerDiscreteScheduler with s_churn=0")
    if class_name == "DDIMScheduler":
        return _ddim(cfg, num_steps, eta)
    if class_name == "DDIMInverseScheduler":
        return _ddim_inverse(cfg, num_steps)
    if class_name == "EulerDiscreteScheduler":
        return _euler(cfg, num_steps)
    return _cogvideox(class_name, cfg, num_steps)


# ----------------------------------------------------------------------------------------- host tables


def _check(cfg: dict, option: str, allowed: tuple) -> None:
    if cfg[option] not in allowed:
        choices = ", ".join(map(repr, allowed))
        raise SchedulerError(f"{option}={cfg[option]!r} is not supported; choose one of {choices}")


def _betas(cfg: dict, scaled_linear_dtype: type) -> np.ndarray:
    """[N] betas as diffusers builds them (float32, scaled_linear in ``scaled_linear_dtype``)."""
    n, b0, b1 = int(cfg["num_train_timesteps"]), cfg["beta_start"], cfg["beta_end"]
    if cfg["trained_betas"] is not None:
        return np.asarray(cfg["trained_betas"], np.float32)
    if cfg["beta_schedule"] == "linear":
        return np.linspace(b0, b1, n).astype(np.float32)
    if cfg["beta_schedule"] == "scaled_linear":
        return np.linspace(b0**0.5, b1**0.5, n).astype(scaled_linear_dtype) ** 2
    if cfg["beta_schedule"] == "squaredcos_cap_v2":

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], np.float32)
    raise SchedulerError(
        f"beta_schedule={cfg['beta_schedule']!r} is not supported; "
        "choose one of 'linear', 'scaled_linear', 'squaredcos_cap_v2'"
    )


def _cumprod(alphas: np.ndarray) -> np.ndarray:
    # torch accumulates a float32 cumprod in float64 on CPU; doing the same matches it bit for bit.
    return np.cumprod(alphas.astype(np.float64)).astype(alphas.dtype)


def _zero_snr_on_alphas_cumprod(ac: np.ndarray) -> np.ndarray:
    """Shift and scale √ᾱ so that √ᾱ_T = 0 and √ᾱ_0 is kept; returns the new ᾱ (same dtype)."""
    s = np.sqrt(ac)
    s0, s_t = s[0], s[-1]
    s = (s - s_t) * (s0 / (s0 - s_t))
    return s**2


def _alphas_cumprod(cfg: dict) -> np.ndarray:
    """[N] float32 ᾱ of DDIMScheduler / DDIMInverseScheduler / EulerDiscreteScheduler."""
    betas = _betas(cfg, np.float32)
    if cfg["rescale_betas_zero_snr"]:
        alpha_bar = _zero_snr_on_alphas_cumprod(_cumprod(1.0 - betas))
        alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
        betas = 1.0 - alphas
    return _cumprod(1.0 - betas)


def _spacing(cfg: dict, num_steps: int, allowed: tuple) -> np.ndarray:
    """[n] timesteps in diffusers' order (descending), float64 before each class's cast."""
    _check(cfg, "timestep_spacing", allowed)
    n_train = int(cfg["num_train_timesteps"])
    if cfg["timestep_spacing"] == "linspace":
        return np.linspace(0, n_train - 1, num_steps)[::-1].copy()
    if cfg["timestep_spacing"] == "leading":
        return (np.arange(num_steps) * (n_train // num_steps))[::-1].astype(np.float64) + cfg["steps_offset"]
    return np.round(np.arange(n_train, 0, -n_train / num_steps)) - 1


def _int_timesteps(cfg: dict, num_steps: int, allowed: tuple) -> np.ndarray:
    timesteps = np.round(_spacing(cfg, num_steps, allowed)).astype(np.int64)
    n_train = int(cfg["num_train_timesteps"])
    if timesteps.min() < 0 or timesteps.max() >= n_train:
        raise SchedulerError(
            f"timesteps {timesteps.min()}..{timesteps.max()} leave [0, {n_train}); "
            f"check steps_offset={cfg['steps_offset']}"
        )
    return timesteps


def _clip_range(cfg: dict) -> float | None:
    return float(cfg["clip_sample_range"]) if cfg["clip_sample"] else None


def _schedule(
    class_name: str,
    kind: str,
    cfg: dict,
    timesteps: np.ndarray,
    init_noise_sigma: float,
    alphas_cumprod: np.ndarray,
    coefs: dict[str, np.ndarray],
    stochastic: bool = False,
) -> Schedule:
    return Schedule(
        class_name=class_name,
        kind=kind,
        prediction_type=cfg["prediction_type"],
        clip_sample_range=_clip_range(cfg) if kind == "ddim" else None,
        stochastic=stochastic,
        timesteps=jnp.asarray(timesteps),
        init_noise_sigma=jnp.asarray(init_noise_sigma, jnp.float32),
        alphas_cumprod=jnp.asarray(alphas_cumprod, jnp.float32),
        coefs={k: jnp.asarray(np.asarray(v, np.float32)) for k, v in coefs.items()},
    )


def _ddim(cfg: dict, num_steps: int, eta: float) -> Schedule:
    if cfg["thresholding"]:
        raise SchedulerError("thresholding=True (dynamic thresholding) is not supported")
    ac = _alphas_cumprod(cfg)  # [N] float32
    final = np.float32(1.0) if cfg["set_alpha_to_one"] else ac[0]
    timesteps = _int_timesteps(cfg, num_steps, ("linspace", "leading", "trailing"))  # [n]
    prev = timesteps - int(cfg["num_train_timesteps"]) // num_steps  # the t - N//n quirk, every spacing
    a_t = ac[timesteps]
    a_prev = np.where(prev >= 0, ac[np.maximum(prev, 0)], final)
    variance = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
    std = np.float32(eta) * np.sqrt(variance)
    coefs = dict(
        sqrt_a=np.sqrt(a_t), sqrt_b=np.sqrt(1 - a_t), sqrt_a_next=np.sqrt(a_prev),
        direction=np.sqrt(1 - a_prev - std**2), std=std,
    )
    return _schedule("DDIMScheduler", "ddim", cfg, timesteps.astype(np.int32), 1.0, ac, coefs, stochastic=eta > 0)


def _ddim_inverse(cfg: dict, num_steps: int) -> Schedule:
    ac = _alphas_cumprod(cfg)  # [N] float32
    n_train = int(cfg["num_train_timesteps"])
    initial = np.float32(1.0) if cfg["set_alpha_to_one"] else ac[0]
    timesteps = _int_timesteps(cfg, num_steps, ("leading", "trailing"))[::-1].copy()  # [n] ascending
    cur = np.minimum(timesteps - n_train // num_steps, n_train - 1)  # x̂₀ is read at ᾱ_cur, x goes to ᾱ_t
    a_cur = np.where(cur >= 0, ac[np.maximum(cur, 0)], initial)
    a_next = ac[timesteps]
    coefs = dict(
        sqrt_a=np.sqrt(a_cur), sqrt_b=np.sqrt(1 - a_cur), sqrt_a_next=np.sqrt(a_next),
        direction=np.sqrt(1 - a_next), std=np.zeros(len(timesteps), np.float32),
    )
    return _schedule("DDIMInverseScheduler", "ddim", cfg, timesteps.astype(np.int32), 1.0, ac, coefs)


def _euler(cfg: dict, num_steps: int) -> Schedule:
    for option in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        if cfg[option]:
            raise SchedulerError(f"{option}=True is not supported (only the default interpolated sigmas)")
    _check(cfg, "interpolation_type", ("linear",))
    _check(cfg, "final_sigmas_type", ("zero", "sigma_min"))
    _check(cfg, "timestep_type", ("discrete", "continuous"))
    if cfg["timestep_type"] == "continuous" and cfg["prediction_type"] == "v_prediction":
        raise SchedulerError("timestep_type='continuous' with prediction_type='v_prediction' is not supported")
    ac = _alphas_cumprod(cfg)  # [N] float32
    if cfg["rescale_betas_zero_snr"]:
        ac[-1] = 2.0**-24  # diffusers keeps σ_T finite
    timesteps = _spacing(cfg, num_steps, ("linspace", "leading", "trailing")).astype(np.float32)  # [n]
    train_sigmas = np.sqrt((1 - ac) / ac)  # [N] float32
    sigmas = np.interp(timesteps, np.arange(len(train_sigmas)), train_sigmas)  # [n] float64
    last = train_sigmas[0] if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)  # [n + 1]
    sigma_max = sigmas.max()
    init = sigma_max if cfg["timestep_spacing"] in ("linspace", "trailing") else np.sqrt(sigma_max**2 + 1)
    sigma, sigma_next = sigmas[:-1], sigmas[1:]
    coefs = dict(
        sigma=sigma, dt=sigma_next - sigma, input_scale=np.sqrt(sigma**2 + 1),
        v_out=-sigma / np.sqrt(sigma**2 + 1), v_skip=sigma**2 + 1,
    )
    return _schedule("EulerDiscreteScheduler", "euler", cfg, timesteps, init, ac, coefs)


def _cogvideox(class_name: str, cfg: dict, num_steps: int) -> Schedule:
    ac = _cumprod(1.0 - _betas(cfg, np.float64))  # [N] float64 for scaled_linear (diffusers), else float32
    shift = cfg["snr_shift_scale"]
    ac = ac / (shift + (1 - shift) * ac)
    if cfg["rescale_betas_zero_snr"]:
        ac = _zero_snr_on_alphas_cumprod(ac)  # CogVideoX's variant: on ᾱ directly, ᾱ_T = 0 exactly
    final = 1.0 if cfg["set_alpha_to_one"] else ac[0]
    timesteps = _int_timesteps(cfg, num_steps, ("linspace", "leading", "trailing"))  # [n]
    prev = timesteps - int(cfg["num_train_timesteps"]) // num_steps
    a_t = ac[timesteps]
    a_p = np.where(prev >= 0, ac[np.maximum(prev, 0)], final).astype(ac.dtype)
    common = (cfg, timesteps.astype(np.int32), 1.0, ac)
    x0_coefs = dict(sqrt_a=np.sqrt(a_t), sqrt_b=np.sqrt(1 - a_t))
    if class_name == "CogVideoXDDIMScheduler":
        a = np.sqrt((1 - a_p) / (1 - a_t))  # x_prev = a·x + b·x̂₀, finite at ᾱ_t = 0
        coefs = dict(x0_coefs, a=a, b=np.sqrt(a_p) - np.sqrt(a_t) * a)
        return _schedule(class_name, "cogvideox_ddim", *common, coefs)
    # DPM-Solver++ (2M, SDE) multipliers. ±inf appear at ᾱ = 0 and ᾱ_prev = 1; IEEE arithmetic gives the
    # finite limits diffusers gets (e.g. last step: m1 = 0, m2 = -1, noise = 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.log(np.sqrt(a_t / (1 - a_t)))
        lam_next = np.log(np.sqrt(a_p / (1 - a_p)))
        h = lam_next - lam
        m1 = np.sqrt((1 - a_p) / (1 - a_t)) * np.exp(-h)
        m2 = np.expm1(-2 * h) * np.sqrt(a_p)
        noise = np.sqrt(1 - a_p) * np.sqrt(1 - np.exp(-2 * h))
        r = np.concatenate([[np.nan], lam[1:] - lam[:-1]]) / h  # h_last / h, back = timesteps[i - 1]
        second = (np.arange(len(timesteps)) > 0) & (prev >= 0)  # where diffusers takes the 2nd-order path
        m3 = np.where(second, 1 + 1 / (2 * r), 0.0)
        m4 = np.where(second, 1 / (2 * r), 0.0)
    coefs = dict(x0_coefs, m1=m1, m2=m2, m3=m3, m4=m4, noise=noise, second=second)
    return _schedule(class_name, "cogvideox_dpm", *common, coefs, stochastic=True)


# ------------------------------------------------------------------------------------ jit-able functions


def initial_carry(schedule: Schedule, x: jax.Array) -> tuple:
    """The carry ``step`` threads between steps for sample x.

    ``()``, except for CogVideoX DPM: (old x̂₀ [x.shape] float32, has_old [] bool), so that a loop started
    at any step takes diffusers' first-order update first, as a fresh diffusers loop does.
    """
    if schedule.kind == "cogvideox_dpm":
        return jnp.zeros(x.shape, jnp.float32), jnp.array(False)
    return ()


def scale_model_input(schedule: Schedule, i: jax.Array, x: jax.Array) -> jax.Array:
    """The model input at step i: x/√(σ_i²+1) for Euler, x itself otherwise. Same shape and dtype as x."""
    if schedule.kind != "euler":
        return x
    return (x.astype(jnp.float32) / schedule.coefs["input_scale"][i]).astype(x.dtype)


def _noise(key_or_noise: jax.Array | None, shape: tuple, class_name: str) -> jax.Array:
    if key_or_noise is None:
        raise SchedulerError(f"{class_name} as configured is stochastic: pass a PRNG key or the noise to step")
    if jnp.issubdtype(key_or_noise.dtype, jnp.floating):
        if key_or_noise.shape != shape:
            raise SchedulerError(f"noise shape {key_or_noise.shape} must equal the sample shape {shape}")
        return key_or_noise.astype(jnp.float32)
    return jax.random.normal(key_or_noise, shape, jnp.float32)


def step(
    schedule: Schedule,
    i: jax.Array,
    x: jax.Array,
    model_output: jax.Array,
    carry: tuple = (),
    key_or_noise: jax.Array | None = None,
) -> tuple[jax.Array, tuple]:
    """One denoising (or, for DDIM inverse, noising) step from step i's sample to the next one.

    Args:
        schedule: from :func:`make_schedule`.
        i: [] int step number in [0, n); may be traced.
        x: [...] the current sample (any float dtype; the update runs in float32).
        model_output: [...] the model's ε or v at (scale_model_input(x), schedule.timesteps[i]).
        carry: from :func:`initial_carry` or the previous ``step``.
        key_or_noise: a PRNG key, or standard normal noise [...] (float, x's shape) to use as this step's
            draw; needed only where ``schedule.stochastic``, ignored elsewhere.

    Returns:
        (x_next [...] in x's dtype, the new carry).
    """
    c = {name: table[i] for name, table in schedule.coefs.items()}  # each []
    x32, out = x.astype(jnp.float32), model_output.astype(jnp.float32)
    if schedule.kind == "euler":
        if schedule.prediction_type == "epsilon":
            x0 = x32 - c["sigma"] * out
        else:
            x0 = out * c["v_out"] + x32 / c["v_skip"]
        x_next = x32 + (x32 - x0) / c["sigma"] * c["dt"]
        return x_next.astype(x.dtype), carry
    if schedule.prediction_type == "epsilon":
        x0 = (x32 - c["sqrt_b"] * out) / c["sqrt_a"]
    else:
        x0 = c["sqrt_a"] * x32 - c["sqrt_b"] * out
    if schedule.kind == "ddim":
        eps = out if schedule.prediction_type == "epsilon" else c["sqrt_a"] * out + c["sqrt_b"] * x32
        if schedule.clip_sample_range is not None:
            x0 = jnp.clip(x0, -schedule.clip_sample_range, schedule.clip_sample_range)
        x_next = c["sqrt_a_next"] * x0 + c["direction"] * eps
        if schedule.stochastic:
            x_next = x_next + c["std"] * _noise(key_or_noise, x.shape, schedule.class_name)
        return x_next.astype(x.dtype), carry
    if schedule.kind == "cogvideox_ddim":
        return (c["a"] * x32 + c["b"] * x0).astype(x.dtype), carry
    old_x0, has_old = carry
    second = has_old & (c["second"] > 0)
    denoised = jnp.where(second, c["m3"] * x0 - c["m4"] * old_x0, x0)
    z = _noise(key_or_noise, x.shape, schedule.class_name)
    x_next = c["m1"] * x32 - c["m2"] * denoised + c["noise"] * z
    return x_next.astype(x.dtype), (x0, jnp.array(True))


def add_noise(schedule: Schedule, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """The forward process at training timestep(s) t, as diffusers' ``add_noise``.

    √ᾱ_t·x0 + √(1−ᾱ_t)·noise for the ᾱ schedulers; x0 + σ(t)·noise for Euler (σ interpolated at t,
    which equals diffusers' σ at every schedule timestep).

    Args:
        x0, noise: [B, ...] clean samples and standard normal noise.
        t: [] or [B] timesteps (int; float allowed for Euler), one per leading row of x0.

    Returns:
        [B, ...] noisy samples in x0's dtype.
    """
    t = jnp.asarray(t)
    expand = (1,) * (x0.ndim - t.ndim)  # t [B] -> [B, 1, ..., 1]
    x32, n32 = x0.astype(jnp.float32), noise.astype(jnp.float32)
    ac = schedule.alphas_cumprod
    if schedule.kind == "euler":
        sigmas = jnp.sqrt((1 - ac) / ac)  # [N]
        sigma = jnp.interp(t.astype(jnp.float32), jnp.arange(ac.shape[0], dtype=jnp.float32), sigmas)
        return (x32 + n32 * sigma.reshape(t.shape + expand)).astype(x0.dtype)
    a = ac[t].reshape(t.shape + expand)
    return (jnp.sqrt(a) * x32 + jnp.sqrt(1 - a) * n32).astype(x0.dtype)
