"""DDIM inversion through the one sampling loop: a real video's latents back to the noise that regenerates them.

    schedule = make_schedule(components.scheduler_config, 25)         # the forward DDIM the edit will use
    inv = invert(unet, schedule, x0, text)     # x0 [V, F, h, w, C] clean latents, text [V, L, D] prompts
    inv.noise                                  # [V, F, h, w, C]: start the forward loop here
    inv.drive                                  # [steps, V, F, h, w, C]: the forward loop's latents after each step

**Inverse schedule.** Forward DDIM step i takes x from ᾱ(t_i) to ᾱ(p_i), with p_i = t_i − N//n (or the
final ᾱ after the last step). :func:`inverse_schedule` runs these steps backwards: inverse step j = n − 1 − i
takes x from ᾱ(p_i) to ᾱ(t_i) with the model's ε evaluated at (x, t_i) — the usual approximation
ε(x at p_i, t_i) ≈ ε(x at t_i, t_i) of diffusers' ``DDIMInverseScheduler`` and of null-text inversion. So
the inversion visits exactly the noise levels the forward loop does, whatever the forward's timestep
spacing; for "leading" and "trailing" spacings it is diffusers' ``DDIMInverseScheduler`` step for step.

**v-prediction and CogVideoX.** A deterministic DDIM step (DDIM or CogVideoX DDIM, ε or v prediction, no x̂₀
clipping) is linear in the sample and the model output: x(p_i) = A_i·x(t_i) + B_i·out. The inverse step is its
exact inverse for the same output, x(t_i) = (x(p_i) − B_i·out)/A_i, with out evaluated at (x(p_i), t_i) as above.
For ε this is the mirrored DDIM step (and diffusers' ``DDIMInverseScheduler``). For v it is not what
``DDIMInverseScheduler`` does: that one converts v to ε and x̂₀ with ᾱ(p_i), the level the sample is at, though the
model was told t_i and predicts v for that level; then even an unchanged v does not lead back to the forward
step's start. Here the model's v is read at its own level t_i (x̂₀ = √ᾱ(t_i)·x − √(1 − ᾱ(t_i))·v), as the
forward step reads it, and the step is written in CogVideoX DDIM's form x ← a·x + b·x̂₀ with (a, b) solved from
(A_i, B_i). So a forward step undoes an inverse step whenever the model's output is the same at both points,
whatever the prediction type, including CogVideoX's zero-terminal-SNR first step (ᾱ(t_0) = 0).

**Trajectory.** Inverse step j ends at the noise level where forward step n − 1 − j starts, so the inverted
latents are the forward loop's latents in reverse: :attr:`Inversion.drive` lists, for each forward step,
the latents it should end at (the last is x0 itself). Passing it as a :class:`ieadapt_jax.sampling.Drive`
makes a video's rows see exactly the inverted latents (a real video's source rows in editing), and its
final latents are x0: an exact reconstruction.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .core.attention import Record
from .core.errors import IEAdaptError
from .core.protocols import Denoiser
from .sampling import make_plan, sample
from .schedulers import Schedule


class InversionError(IEAdaptError):
    """An inversion that cannot run: a non-DDIM or stochastic schedule, or inputs of the wrong shape."""


class Inversion(NamedTuple):
    """What :func:`invert` returns.

    noise: [V, F, h, w, C] the inverted latents at the first forward step's noise level (start sampling here).
    drive: [steps, V, F, h, w, C] the latents after each forward step (drive[i] ends forward step i; the last
        is the clean input).
    records: per inverse step records ([steps, recorded sites, rows], inverse order), or None.
    record_sites: the recorded sites' names.
    """

    noise: jax.Array
    drive: jax.Array
    records: Record | None
    record_sites: tuple[str, ...]


def inverse_schedule(schedule: Schedule) -> Schedule:
    """The inverse of a deterministic forward DDIM schedule (module docstring): same noise levels, reversed.

    Raises:
        InversionError: the schedule is not deterministic DDIM (Euler, CogVideoX DPM, eta > 0, already inverse),
            or it clips x̂₀ with v-prediction (a clipped step is not linear, so it has no exact inverse).
    """
    deterministic_ddim = (schedule.class_name, schedule.kind) in (("DDIMScheduler", "ddim"),
                                                                  ("CogVideoXDDIMScheduler", "cogvideox_ddim"))
    if not deterministic_ddim or schedule.stochastic:
        raise InversionError(
            f"DDIM inversion needs a deterministic DDIMScheduler (eta = 0) or CogVideoXDDIMScheduler schedule; got "
            f"{schedule.class_name}{' with eta > 0' if schedule.stochastic else ''}. Use a DDIM scheduler config "
            "({**config, '_class_name': 'DDIMScheduler'}, or 'CogVideoXDDIMScheduler' for CogVideoX)"
        )
    c = schedule.coefs
    if schedule.kind == "ddim" and schedule.prediction_type == "epsilon":
        # forward step i: x at ᾱ(t_i) -> x at ᾱ(p_i); direction = √(1 − ᾱ(p_i)) when eta = 0
        coefs = dict(
            sqrt_a=c["sqrt_a_next"][::-1], sqrt_b=c["direction"][::-1],
            sqrt_a_next=c["sqrt_a"][::-1], direction=c["sqrt_b"][::-1], std=jnp.zeros_like(c["std"]),
        )
        return dataclasses.replace(schedule, class_name="DDIMInverseScheduler", timesteps=schedule.timesteps[::-1],
                                   coefs=coefs)
    if schedule.clip_sample_range is not None:
        raise InversionError("DDIM inversion of a v-prediction schedule needs clip_sample=False (a clipped step "
                             "cannot be undone exactly)")
    with np.errstate(divide="ignore", invalid="ignore"):  # ᾱ = 0 with ε: caught just below
        a, b = _linear_step(schedule)  # forward step i: x(p_i) = a·x(t_i) + b·out
        sqrt_a, sqrt_b = (np.asarray(c[k], np.float64) for k in ("sqrt_a", "sqrt_b"))  # the model's level t_i
        if schedule.prediction_type == "epsilon":  # x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ: x ← (a' + b'/√ᾱ)·x − b'·√(1−ᾱ)/√ᾱ·ε
            next_x0 = b * sqrt_a / (a * sqrt_b)
            next_x = 1.0 / a - next_x0 / sqrt_a
        else:  # x̂₀ = √ᾱ·x − √(1−ᾱ)·v: x ← a'·x + b'·x̂₀ = (a' + b'·√ᾱ)·x − b'·√(1−ᾱ)·v
            next_x0 = b / (a * sqrt_b)
            next_x = 1.0 / a - next_x0 * sqrt_a
    if not (np.all(np.isfinite(next_x)) and np.all(np.isfinite(next_x0))):
        raise InversionError(f"{schedule.class_name} with prediction_type={schedule.prediction_type!r} has a step that "
                             "cannot be undone (ᾱ = 0 with ε-prediction: zero terminal SNR needs v-prediction)")
    coefs = dict(sqrt_a=c["sqrt_a"][::-1], sqrt_b=c["sqrt_b"][::-1],
                 a=jnp.asarray(next_x[::-1], jnp.float32), b=jnp.asarray(next_x0[::-1], jnp.float32))
    return dataclasses.replace(schedule, class_name=f"{schedule.class_name} inverse", kind="cogvideox_ddim",
                               clip_sample_range=None, timesteps=schedule.timesteps[::-1], coefs=coefs)


def _linear_step(schedule: Schedule) -> tuple[np.ndarray, np.ndarray]:
    """float64 [n] (A, B) of an unclipped forward DDIM step with v-prediction, or a CogVideoX DDIM step: step i
    is x(p_i) = A_i·x(t_i) + B_i·out for the model output ``out`` (ε or v) at step i."""
    c = {k: np.asarray(v, np.float64) for k, v in schedule.coefs.items()}
    sqrt_a, sqrt_b = c["sqrt_a"], c["sqrt_b"]
    if schedule.kind == "ddim":  # x ← √ᾱ(p)·x̂₀ + √(1−ᾱ(p))·ε̂, x̂₀ = √ᾱ·x − √(1−ᾱ)·v, ε̂ = √ᾱ·v + √(1−ᾱ)·x
        return (c["sqrt_a_next"] * sqrt_a + c["direction"] * sqrt_b,
                c["direction"] * sqrt_a - c["sqrt_a_next"] * sqrt_b)
    if schedule.prediction_type == "epsilon":  # CogVideoX DDIM: x ← a·x + b·x̂₀
        return c["a"] + c["b"] / sqrt_a, -c["b"] * sqrt_b / sqrt_a
    return c["a"] + c["b"] * sqrt_a, -c["b"] * sqrt_b


def invert(
    unet: Denoiser,
    schedule: Schedule,
    latents,
    text,
    *,
    uncond=None,
    guidance_scale: float = 1.0,
    record=False,
    backend: str = "auto",
    progress: bool = True,
) -> Inversion:
    """DDIM-invert V videos' clean latents with their prompts, in one run of the sampling loop.

    Args:
        unet: the denoiser (``components.denoiser``: a :class:`models.UNetMotionModel` or a
            :class:`models.CogVideoXTransformer3DModel`).
        schedule: the forward DDIM or CogVideoX DDIM schedule the inverted noise will be sampled with
            (:func:`inverse_schedule` reverses it).
        latents: [V, F, h, w, C] clean latents x0 (VAE latents times the scaling factor).
        text: [V, L, D] text states of each video's prompt.
        uncond: [V, L, D] negative-prompt text states; needed only when ``guidance_scale`` != 1.
        guidance_scale: ω of classifier-free guidance during inversion (1: the prompt's row alone, the usual
            choice; other values add an unconditional row per video).
        record: what each inverse step records (``SiteTable.recording`` spec), e.g. "self" to average entropy
            over the whole trajectory.
        backend: attention backend.
        progress: show a progress bar.

    Returns:
        :class:`Inversion`. With ω != 1 the rows are [φ_0 .. φ_{V-1}, c_0 .. c_{V-1}].
    """
    inverse = inverse_schedule(schedule)
    x0 = jnp.asarray(latents, jnp.float32)
    text = jnp.asarray(text)
    if x0.ndim != 5:
        raise InversionError(f"latents must be [V, F, h, w, C] clean latents, got shape {list(x0.shape)}")
    videos = x0.shape[0]
    if text.ndim != 3 or text.shape[0] != videos:
        raise InversionError(f"text must be [V={videos}, L, D] (one prompt per video), got shape {list(text.shape)}")
    eye = np.eye(videos, dtype=np.float32)
    if guidance_scale == 1.0:
        row_video, row_text, weights = list(range(videos)), text, eye
    else:
        if uncond is None or jnp.shape(uncond) != text.shape:
            raise InversionError(f"guidance_scale={guidance_scale} needs uncond text states of shape {list(text.shape)}")
        row_video = list(range(videos)) * 2
        row_text = jnp.concatenate([jnp.asarray(uncond), text])  # [2V, L, D]
        weights = np.concatenate([(1.0 - guidance_scale) * eye, guidance_scale * eye], axis=1)  # [V, 2V]
    plan = make_plan(unet, row_video, record=record, backend=backend, progress=progress, trajectory=True)
    out = sample(unet, plan, inverse, x0, row_text, weights)
    inverted = out.trajectory  # [steps, V, ...]: inverse step j ends where forward step n - 1 - j starts
    drive = jnp.concatenate([inverted[-2::-1], x0[None]])  # [steps, V, ...]: drive[i] = inverted[n - 2 - i]
    return Inversion(noise=inverted[-1], drive=drive, records=out.records, record_sites=out.record_sites)
