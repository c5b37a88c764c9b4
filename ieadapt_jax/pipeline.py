"""Text-to-video for notebooks: prompt in, uint8 video out, with optional IE-Adapt guidance.

    components = ieadapt_jax.load_animatediff("animatediff-snapshot", dtype=jnp.bfloat16)
    result = ieadapt_jax.text_to_video(components, "a panda playing on a swing set",
                                       guidance=ieadapt_jax.Guidance("U-I", scale=1.0))
    ieadapt_jax.video_io.write_video("panda.mp4", result.video)

It reproduces diffusers' ``AnimateDiffPipeline`` and, given ``load_cogvideox`` components,
``CogVideoXPipeline`` (same weights and initial latents give the same video) through the one sampling loop of :mod:`ieadapt_jax.sampling`: text encoding, the jit-compiled
denoising loop with every guidance branch a row of one batched forward, VAE decoding.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .core.attention import Record
from .core.errors import IEAdaptError
from .core.jit import jit_method
from .core.protocols import Components, check_components
from .core.rewiring import Rewiring, check_window
from .guidance import (
    Guidance,
    GuidanceError,
    dynamic_cfg_scales,
    guidance_rewiring,
    guidance_rows,
    guidance_rows_over_steps,
    perturbs,
    profile_entropy,
    register_sites,
)
from .sampling import make_plan, sample
from .schedulers import make_schedule, scale_model_input


class PipelineError(IEAdaptError):
    """Arguments of a text-to-video call that cannot work (size, prompt length, conflicting options)."""


@dataclasses.dataclass
class VideoResult:
    """What :func:`text_to_video` returns.

    Fields:
        video: uint8 [F, H, W, 3].
        latents: float32 [F, h, w, C] final latents (before the VAE's scaling factor is undone).
        records: per-step records, a :class:`Record` of [steps, recorded sites, rows] arrays, or None.
        sites: names of the registered (perturbed) sites; empty without guidance.
        record_sites: names of the recorded sites, in the order of the records' site axis.
        rows: (text, mode) of each model row, e.g. (("uncond", "A"), ("cond", "A"), ("cond", "U")).
        weights: float32 [R] the combination weights of the rows ([steps, R] with dynamic CFG).
        entropy_profile: [sites] entropy of Eq. 3's profiling pass (NaN where not profiled), or None.
        timings: seconds spent in "text", "profile", "sample", "decode" and "total" (the first call of a
            shape includes compilation).
    """

    video: np.ndarray
    latents: np.ndarray
    records: Record | None
    sites: tuple[str, ...]
    record_sites: tuple[str, ...]
    rows: tuple[tuple[str, str], ...]
    weights: np.ndarray
    entropy_profile: np.ndarray | None
    timings: dict[str, float]


def text_to_video(
    components: Components,
    prompt: str,
    negative_prompt: str = "",
    num_frames: int = 16,
    height: int = 512,
    width: int = 512,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    seed: int = 0,
    rewiring: Rewiring | None = None,
    guidance: Guidance | None = None,
    record=False,
    *,
    latents: Any = None,
    scheduler_config: dict | None = None,
    eta: float = 0.0,
    clip_skip: int | None = None,
    backend: str = "auto",
    progress: bool = True,
    decode: bool = True,
    use_dynamic_cfg: bool = False,
) -> VideoResult:
    """Generate a video from a prompt with AnimateDiff or CogVideoX, optionally with IE-Adapt guidance.

    The noise estimate is ε(φ,A) + ω·(ε(c,A) − ε(φ,A)) for plain CFG (ω = ``guidance_scale``; with ω = 1
    only the conditional row runs), or a :class:`Guidance` preset's formula (paper Eq. 5 / Eq. 6).
    Unlike diffusers, ω < 1 is not switched off: the formula is applied as written.

    Args:
        components: :class:`ieadapt_jax.AnimateDiffComponents` (``load_animatediff``) or
            :class:`ieadapt_jax.CogVideoXComponents` (``load_cogvideox``; its VAE makes (F − 1)/4 + 1 latent frames
            of F, so F = 4k + 1 frames come back as F; its scheduler config is CogVideoX DDIM or DPM).
        prompt, negative_prompt: the prompt c and the negative prompt φ ("" is diffusers' default).
        num_frames, height, width: video size; height and width must be multiples of the VAE factor
            times the denoiser's downsampling factor (64 for SD1.5, 16 for CogVideoX).
        num_inference_steps: denoising steps.
        guidance_scale: ω.
        seed: seeds the initial noise (``jax.random.normal``) and stochastic schedulers.
        rewiring: attention rewiring of the rows of plain CFG (rows ("uncond", "A"), ("cond", "A"); only
            the latter when ω = 1), shape [sites, rows] or [steps, sites, rows]; not with ``guidance``.
        guidance: an IE-Adapt :class:`Guidance`, or None for plain CFG.
        record: what each step records (False, True, a kind such as "self", site names); records come
            back per step as [steps, sites, rows].
        latents: initial noise [f, h, w, C] (channels-last, latent frames, before ``init_noise_sigma``), e.g. the
            same noise given to diffusers (AnimateDiff takes [1, C, f, h, w], CogVideoX [1, f, C, h, w]); default:
            drawn from ``seed``.
        scheduler_config: a diffusers scheduler config overriding ``components.scheduler_config``.
        eta: DDIM's eta.
        clip_skip: diffusers' clip_skip for the text encoder.
        backend: attention backend of the UNet ("auto", "reference", "chunked", "cudnn").
        progress: show a progress bar over the denoising steps.
        decode: decode the latents with the VAE (False: ``video`` is an empty [0, 0, 0, 3] array).
        use_dynamic_cfg: CogVideoX's dynamic CFG: ω changes per step (:func:`ieadapt_jax.guidance.dynamic_cfg_scales`,
            with ω = ``guidance_scale``, which must then exceed 1 as diffusers applies CFG only then).

    Raises:
        PipelineError: bad size, too-long prompt, wrong latents shape, rewiring together with guidance.
        ieadapt_jax.guidance.GuidanceError: unknown preset, bad window, no registered site.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    unet, vae = check_components(components).denoiser, components.vae
    latent_h, latent_w = latent_size(components, height, width)
    schedule = make_schedule(scheduler_config or components.scheduler_config, num_inference_steps, eta=eta)
    if rewiring is not None and guidance is not None:
        raise PipelineError("pass either rewiring (on plain CFG rows) or guidance (which builds its own rewiring), not both")

    preset, lam = ("cfg", 0.0) if guidance is None else (guidance.preset, guidance.scale)
    if use_dynamic_cfg:
        if guidance_scale <= 1:
            raise PipelineError(f"use_dynamic_cfg needs guidance_scale > 1 (diffusers applies CFG only then), got {guidance_scale}")
        rows, weights = guidance_rows_over_steps(preset, dynamic_cfg_scales(schedule.timesteps, guidance_scale), lam)
    else:
        rows, weights = guidance_rows(preset, guidance_scale, lam)
    channels = unet.config.in_channels
    shape = (latent_frames(components, num_frames), latent_h, latent_w, channels)
    if latents is None:
        noise = jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32)
    else:
        noise = jnp.asarray(latents, jnp.float32)
        if noise.shape != shape:
            raise PipelineError(f"latents must be [F, h, w, C] = {list(shape)} (channels-last), got {list(noise.shape)}")
    x_t = noise[None] * schedule.init_noise_sigma  # [1, F, h, w, C]

    tick = time.perf_counter()
    uncond, cond = encode_prompts(components, [negative_prompt, prompt], clip_skip)  # each [L, D]
    row_text = jnp.stack([cond if text == "cond" else uncond for text, _ in rows])  # [R, L, D]
    timings["text"] = time.perf_counter() - tick

    tick = time.perf_counter()
    table = unet.site_table
    sites: tuple[int, ...] = ()
    entropy = None
    active = None
    if guidance is not None and perturbs(rows):
        check_window(guidance.window, num_inference_steps, what="guidance window", error=GuidanceError)
        if guidance.sites is None:
            x0 = scale_model_input(schedule, 0, x_t)
            entropy = profile_entropy(unet, x0, schedule.timesteps[0], cond[None], kind=guidance.kind, backend=backend)
        sites = register_sites(table, guidance, entropy)
        rewiring = guidance_rewiring(table, rows, sites, num_inference_steps, guidance.window)
        active = sites
    elif rewiring is not None and rewiring.rows != len(rows):
        raise PipelineError(
            f"rewiring has {rewiring.rows} rows; this run's rows are {list(rows)} (guidance_scale={guidance_scale})"
        )
    timings["profile"] = time.perf_counter() - tick

    tick = time.perf_counter()
    plan = make_plan(unet, [0] * len(rows), record=record, active=active, backend=backend, progress=progress)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    w = weights[None, :] if weights.ndim == 1 else weights[:, None, :]  # [V=1, R] or [steps, V=1, R]
    out = sample(unet, plan, schedule, x_t, row_text, w, rewiring, key)
    final = np.asarray(out.latents[0])  # [F, h, w, C]
    timings["sample"] = time.perf_counter() - tick

    tick = time.perf_counter()
    if decode:
        video = np.asarray(decode_video(vae, jnp.asarray(final) / vae.config.scaling_factor))  # uint8 [F, H, W, 3]
    else:
        video = np.zeros((0, 0, 0, 3), np.uint8)
    timings["decode"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - start
    return VideoResult(
        video=video,
        latents=final,
        records=out.records,
        sites=tuple(table[s].name for s in sites),
        record_sites=out.record_sites,
        rows=rows,
        weights=weights,
        entropy_profile=entropy,
        timings=timings,
    )


def latent_size(components: Components, height: int, width: int) -> tuple[int, int]:
    """(h, w) latent height and width of a ``height`` x ``width`` video (pixels / the VAE factor).

    Raises:
        PipelineError: a size that is not a positive multiple of the VAE factor times the denoiser's
            downsampling factor (64 for SD1.5, 16 for CogVideoX).
    """
    vae_factor = components.vae.config.downscale
    multiple = vae_factor * components.denoiser.downsampling_factor
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise PipelineError(
            f"height and width must be positive multiples of {multiple} (VAE factor {vae_factor} x denoiser "
            f"downsampling {components.denoiser.downsampling_factor}), got {height}x{width}"
        )
    return height // vae_factor, width // vae_factor


def latent_frames(components: Components, num_frames: int) -> int:
    """Latent frames of a ``num_frames`` video: all of them (AnimateDiff), (F − 1) // r + 1 for a VAE
    compressing time by r (CogVideoX: r = 4), as diffusers' CogVideoXPipeline computes them."""
    ratio = int(getattr(components.vae.config, "temporal_compression_ratio", 1))
    if num_frames < 1:
        raise PipelineError(f"num_frames must be positive, got {num_frames}")
    return (num_frames - 1) // ratio + 1


def tokenize(tokenizer, prompts: list[str]) -> np.ndarray:
    """Token ids [N, max_length] padded as diffusers does; a prompt longer than the encoder takes is an error."""
    max_length = tokenizer.model_max_length
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise PipelineError(f"prompts must be strings, got {type(prompt).__name__}")
        count = len(tokenizer(prompt, truncation=False).input_ids)
        if count > max_length:
            shown = repr(prompt) if len(prompt) <= 60 else repr(prompt[:60]) + "..."
            raise PipelineError(
                f"prompt {shown} has {count} tokens (with begin/end markers); the text encoder takes at "
                f"most {max_length}: shorten it"
            )
    return tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="np").input_ids


def encode_prompts(components: Components, prompts: list[str], clip_skip: int | None = None) -> jax.Array:
    """Text states [N, L, D] of N prompts through the components' tokenizer and text encoder (CLIP or T5).

    ``clip_skip`` is diffusers' clip_skip (CLIP only). Raises :class:`PipelineError` for a prompt the encoder
    cannot take whole (:func:`tokenize`).
    """
    ids = jnp.asarray(tokenize(components.tokenizer, prompts))  # [N, L]
    return _text_states(components.text_encoder, ids, clip_skip=clip_skip)  # [N, L, D]


@jit_method(static_argnames=("clip_skip",))
def _text_states(text_encoder, ids, *, clip_skip):
    return text_encoder.prompt_embeds(ids, clip_skip)


@jit_method(announce="the VAE decoder")
def decode_video(vae, z):
    """uint8 frames [F, H, W, 3] of one video's latents z [f, h, w, C] (the VAE's scaling factor already undone).

    ``decode_video.pure(structure, state, z)`` (:func:`~ieadapt_jax.core.jit.jit_method`) is the same function on a
    split VAE; traceable, e.g. under ``lax.map``."""
    frames = vae.decode_frames(z)  # [F, H, W, 3] in [-1, 1]
    unit = jnp.clip(frames.astype(jnp.float32) / 2 + 0.5, 0.0, 1.0)
    return jnp.round(unit * 255).astype(jnp.uint8)
