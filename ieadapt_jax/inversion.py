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

from .attention import Record
from .sampling import make_plan, sample
from .schedulers import Schedule


class InversionError(ValueError):
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
        InversionError: the schedule is not deterministic DDIM (Euler, CogVideoX, eta > 0, or already inverse).
    """
    if schedule.class_name != "DDIMScheduler" or schedule.kind != "ddim" or schedule.stochastic:
        raise InversionError(
            f"DDIM inversion needs a deterministic DDIMScheduler schedule (eta = 0); got {schedule.class_name}"
            f"{' with eta > 0' if schedule.stochastic else ''}. Use a DDIM scheduler config "
            "({**config, '_class_name': 'DDIMScheduler'})"
        )
    c = schedule.coefs  # forward step i: x at ᾱ(t_i) -> x at ᾱ(p_i); direction = √(1 − ᾱ(p_i)) when eta = 0
    coefs = dict(
        sqrt_a=c["sqrt_a_next"][::-1], sqrt_b=c["direction"][::-1],
        sqrt_a_next=c["sqrt_a"][::-1], direction=c["sqrt_b"][::-1], std=jnp.zeros_like(c["std"]),
    )
    return dataclasses.replace(schedule, class_name="DDIMInverseScheduler", timesteps=schedule.timesteps[::-1],
                               coefs=coefs)


def invert(
    unet,
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
        unet: a :class:`models.UNetMotionModel`.
        schedule: the forward DDIM schedule the inverted noise will be sampled with (:func:`inverse_schedule`
            reverses it).
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
