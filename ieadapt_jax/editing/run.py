"""Running edits: Algorithm 1 on generated videos, and DDIM inversion then editing on real ones.

    result = edit(components, "a large red circle moving right on a white background",
                  "a large blue circle moving right on a white background", guidance_scale=5.0)
    result.source_video, result.edited_video          # uint8 [F, H, W, 3] each, from one sampling run

Steps of :func:`edit` (a batch of P pairs in :func:`edit_batch`):

1. **Start.** Generated: noise x_T from ``seed``, shared by the source and the target. Real (``video=``): the
   frames are VAE-encoded and DDIM-inverted with the source prompt (:mod:`ieadapt_jax.inversion`); x_T is the
   inverted noise.
2. **Profile** the source's self-attention entropy: ``profile="first"`` records one forward of the source's
   conditional row at the first step (the paper's Algorithm 1, line 2); ``"run"`` averages over every step
   of the source's own run (for a real video: over the inversion, which visits the same noise levels).
3. **Choose sites** with the method (:mod:`.presets`): for ieadapt the bottom ρ of self-attention sites.
4. **Mask** (optional): a user mask, or a word-influence mask from the source (:mod:`.masks`).
5. **One sampling run** of the four rows per pair: target rows take the source's tensors at the chosen sites
   (in the step ``window``); a real video's source rows follow its inversion trajectory (``drive_source``),
   so they see exactly the inverted latents and the source comes out as the input; the mask blends the
   target's latents with the source's after every step.
6. **Decode** both videos.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..core import make_forward
from ..core.jit import jit_method
from ..core.rewiring import check_window, resolve_sites
from ..guidance import dynamic_cfg_scales, profile_entropy
from ..inversion import Inversion, invert
from ..pipeline import decode_video, encode_prompts, latent_frames, latent_size
from ..sampling import Blend, Drive, make_plan, sample
from ..schedulers import Schedule, make_schedule, scale_model_input
from .masks import ablate, latent_mask, word_influence_mask, word_positions
from .presets import (
    DEFAULT_RATIO,
    ROWS_PER_PAIR,
    EditError,
    check_applies,
    check_p2p_prompts,
    check_ratio,
    edit_rewiring,
    pair_layout,
    select_sites,
)
from .presets import (
    method as get_method,
)

PROFILES = ("first", "run")


COGVIDEOX_SCHEDULERS = ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler")


def ddim_config(config: dict) -> dict:
    """The scheduler config editing samples with: DDIM (what inversion needs) on the snapshot's noise schedule.

    A DDIMScheduler or CogVideoXDDIMScheduler config is kept as is; CogVideoX's DPM becomes CogVideoX DDIM (the
    same ᾱ, with its SNR shift; DPM draws noise every step, which inversion cannot undo); another class's (SD1.5's
    PNDM, Euler, ...) becomes DDIM with the same betas and x0 clipping off unless the config sets it, as
    AnimateDiff's documentation recommends.
    """
    name = config.get("_class_name")
    if name in ("DDIMScheduler", "CogVideoXDDIMScheduler"):
        return dict(config)
    if name in COGVIDEOX_SCHEDULERS:
        return {**config, "_class_name": "CogVideoXDDIMScheduler"}
    return {**config, "_class_name": "DDIMScheduler", "clip_sample": config.get("clip_sample", False)}


def inversion_config(config: dict) -> dict:
    """The scheduler config of real-video edits: :func:`ddim_config` without x0 clipping.

    DDIM inversion undoes the forward steps only where x̂₀ is not clipped; with clipping the inverted noise
    no longer regenerates the video (toy model, 25 steps: 9 dB reconstruction PSNR with clipping, 40 dB
    without), so the inversion and the edit that starts from it both run unclipped.
    """
    return {**ddim_config(config), "clip_sample": False}


@dataclasses.dataclass
class EditResult:
    """What :func:`edit` returns.

    Fields:
        source_video, edited_video: uint8 [F, H, W, 3]. For a real video the source is the source rows'
            result: the input itself (up to the VAE) when driven by the inversion, else its DDIM reconstruction.
        input_video: uint8 [F, H, W, 3] the real video as read, or None for a generated edit.
        source_latents, edited_latents: float32 [f, h, w, C] final latents (VAE scaling not undone).
        method, ratio: the method and ρ.
        sites: names of the injected sites, in forward order; site_positions: their table positions.
        entropy: float64 [sites] the source's profiled entropy per site of the table (NaN where not profiled).
        mask: float32 [f, h, w] the latent-resolution blend mask (1 = edited region), or None.
        metrics: "reconstruction_psnr" (real videos: input vs source video, dB) and "vae_psnr" (input vs its
            VAE round trip) where they apply.
        timings: seconds per phase ("text", "encode", "invert", "profile", "mask", "sample", "decode", "total");
            the first call of a shape includes compilation.
        config: the settings of the run.
    """

    source_video: np.ndarray
    edited_video: np.ndarray
    input_video: np.ndarray | None
    source_latents: np.ndarray
    edited_latents: np.ndarray
    method: str
    ratio: float
    sites: tuple[str, ...]
    site_positions: tuple[int, ...]
    entropy: np.ndarray
    mask: np.ndarray | None
    metrics: dict
    timings: dict
    config: dict


@dataclasses.dataclass
class BatchEdit:
    """What :func:`edit_batch` returns for P pairs.

    source_latents, edited_latents: float32 [P, F, h, w, C]; entropy: float64 [P, sites] (NaN where not
    profiled); sites: per pair, the injected site positions; masks: float32 [P, F, h, w] or None.
    """

    source_latents: np.ndarray
    edited_latents: np.ndarray
    entropy: np.ndarray
    sites: list[tuple[int, ...]]
    masks: np.ndarray | None


def encode_text(components, prompts: list[str], negative_prompt: str = "") -> tuple[jax.Array, jax.Array]:
    """(negative prompt states [L, D], prompt states [N, L, D]) through the components' tokenizer and encoder."""
    states = encode_prompts(components, [negative_prompt] + list(prompts), None)  # [1 + N, L, D]
    return states[0], states[1:]


def edit_batch(
    components,
    sources: list[str],
    targets: list[str],
    x_t,
    schedule: Schedule,
    *,
    method: str = "ieadapt",
    ratio: float = DEFAULT_RATIO,
    sites=None,
    window: tuple[int, int] | None = None,
    profile: str = "first",
    guidance_scale: float = 7.5,
    use_dynamic_cfg: bool = False,
    negative_prompt: str = "",
    inversion: Inversion | None = None,
    drive_source: bool = True,
    masks=None,
    mask_words: str | None = None,
    seed: int = 0,
    all_sites_active: bool = False,
    backend: str = "auto",
    progress: bool = True,
    timings: dict | None = None,
) -> BatchEdit:
    """Edit P pairs in one sampling run (steps 2–5 of the module docstring).

    Args:
        components: pipeline components (``load_animatediff``, ``load_cogvideox``, ``toy.load_default``, ...).
        sources, targets: P source and P target prompts.
        x_t: [P, F, h, w, C] initial latents of each pair (already scaled by ``schedule.init_noise_sigma``):
            fresh noise, or ``inversion.noise``.
        schedule: the forward schedule.
        method, ratio, sites: the editing method (:data:`.presets.METHODS`), ρ, and an optional explicit site
            list (names or positions) replacing the method's choice.
        window: inject only at steps in [start, stop) (None: every step).
        profile: "first" or "run" (module docstring).
        guidance_scale: ω of both videos' classifier-free guidance.
        use_dynamic_cfg: CogVideoX's dynamic CFG: ω changes per step (:func:`ieadapt_jax.guidance.dynamic_cfg_scales`
            with ω = ``guidance_scale``), for both videos and for the source's own run.
        negative_prompt: the φ text of the unconditional rows.
        inversion: the sources' :class:`Inversion` (real videos), or None (generated).
        drive_source: with an inversion, make the source rows follow its trajectory.
        masks: [P, F, h, w] latent-resolution blend masks (1 = edit), or None.
        mask_words: source-prompt words for word-influence masks (replaces ``masks``), or None.
        seed: seeds the word-influence mask's noise.
        all_sites_active: apply the rewiring at every site (not just the chosen ones), so that runs choosing
            different sites share one compiled loop (sweeps over methods and ρ); the result is the same.
        backend, progress: attention backend; progress bars.
        timings: a dict that receives the seconds of "profile", "mask" and "sample".
    """
    timings = {} if timings is None else timings
    denoiser = components.denoiser
    table = denoiser.site_table
    spec = check_applies(denoiser, method)
    ratio = check_ratio(ratio)
    check_window(window, schedule.num_steps, what="injection window", error=EditError)
    if profile not in PROFILES:
        raise EditError(f"unknown entropy profile {profile!r}; choose one of {', '.join(PROFILES)}")
    pairs = len(sources)
    if len(targets) != pairs or pairs == 0:
        raise EditError(f"need as many target prompts as source prompts (at least one), got {pairs} and {len(targets)}")
    if method == "p2p":
        for source, target in zip(sources, targets):
            check_p2p_prompts(components.tokenizer, source, target)
    if mask_words is not None and masks is not None:
        raise EditError("give a mask or mask words, not both")
    omegas = _step_scales(schedule, guidance_scale, use_dynamic_cfg)
    uncond, text = encode_text(components, list(sources) + list(targets), negative_prompt)
    src_text, tgt_text = text[:pairs], text[pairs:]
    x_t = jnp.asarray(x_t, jnp.float32)
    if masks is not None:
        masks = np.asarray(masks, np.float32)
        expected = (pairs,) + tuple(x_t.shape[1:-1])
        if masks.shape != expected:
            raise EditError(f"masks must be [P, F, h, w] = {list(expected)} (latent resolution), got {list(masks.shape)}")

    tick = time.perf_counter()
    source_x0 = None if inversion is None else inversion.drive[-1]  # [P, ...] clean source latents
    if profile == "run" and inversion is not None:
        entropy = _cond_entropy(inversion.records, inversion.record_sites, table, pairs)
    elif profile == "run" or (mask_words is not None and source_x0 is None):
        source_x0, entropy = generate_batch(denoiser, schedule, x_t, uncond, src_text, omegas,
                                            record="self" if profile == "run" else False, backend=backend,
                                            progress=progress)
    else:
        entropy = None
    if entropy is None:
        first = scale_model_input(schedule, 0, x_t)  # [P, ...]
        entropy = np.stack([profile_entropy(denoiser, first[p:p + 1], schedule.timesteps[0], src_text[p:p + 1],
                                            kind="self", backend=backend) for p in range(pairs)])  # [P, sites]
    pair_sites = [select_sites(denoiser, method, entropy[p], ratio, sites) for p in range(pairs)]
    timings["profile"] = time.perf_counter() - tick

    tick = time.perf_counter()
    if mask_words is not None:
        positions = [word_positions(components.tokenizer, source, mask_words) for source in sources]
        ablated = jnp.stack([ablate(src_text[p], uncond, positions[p]) for p in range(pairs)])
        forward, state = make_forward(denoiser, backend=backend)
        masks = word_influence_mask(forward, state, schedule, source_x0, src_text, ablated, seed=seed)
    timings["mask"] = time.perf_counter() - tick

    tick = time.perf_counter()
    row_video, weights = pair_layout(pairs, guidance_scale)
    if np.ndim(omegas):
        weights = np.stack([pair_layout(pairs, float(omega))[1] for omega in omegas])  # [steps, 2P, 4P]
    rows_text = jnp.stack([row for p in range(pairs) for row in (uncond, src_text[p], uncond, tgt_text[p])])
    rewiring = edit_rewiring(table, pair_sites, spec.tensors, schedule.num_steps, window)
    active = None if all_sites_active else sorted(set().union(*pair_sites))
    plan = make_plan(denoiser, row_video, active=active, backend=backend, progress=progress)
    latents = jnp.stack([x_t, x_t], axis=1).reshape((2 * pairs,) + x_t.shape[1:])  # [2P, ...]: source, target
    drive = None
    if inversion is not None and drive_source:
        drive = Drive(np.arange(0, 2 * pairs, 2), inversion.drive)
    blend = None
    if masks is not None:
        steps_mask = np.broadcast_to(masks[None, ..., None], (schedule.num_steps,) + masks.shape + (1,))
        blend = Blend(np.arange(1, 2 * pairs, 2), np.arange(0, 2 * pairs, 2), steps_mask)
    out = sample(denoiser, plan, schedule, latents, rows_text, weights, rewiring, drive=drive, blend=blend)
    final = np.asarray(out.latents).reshape((pairs, 2) + tuple(x_t.shape[1:]))  # [P, 2, F, h, w, C]
    timings["sample"] = time.perf_counter() - tick
    return BatchEdit(final[:, 0], final[:, 1], entropy, pair_sites, masks)


def generate_batch(denoiser, schedule, x_t, uncond, text, guidance_scale, *, record=False, backend="auto", progress=True):
    """P videos generated alone with classifier-free guidance (rows [φ_0..φ_{P-1}, c_0..c_{P-1}]), as the source
    rows of an edit are: (final latents [P, ...], entropy of the conditional rows averaged over steps [P, sites]
    when ``record`` asks for it, else None). ``denoiser``: ``components.denoiser``; x_t [P, ...]
    initial latents, uncond [L, D], text [P, L, D]; ``guidance_scale``: ω, or [steps] one ω per step."""
    pairs = x_t.shape[0]
    eye = np.eye(pairs, dtype=np.float32)
    omega = np.asarray(guidance_scale, np.float32)[..., None, None]  # [] or [steps] -> [..., 1, 1]
    weights = np.concatenate([(1.0 - omega) * eye, omega * eye], axis=-1)  # [P, 2P] or [steps, P, 2P]
    rows_text = jnp.concatenate([jnp.broadcast_to(uncond, text.shape), text])
    plan = make_plan(denoiser, list(range(pairs)) * 2, record=record, backend=backend, progress=progress)
    out = sample(denoiser, plan, schedule, x_t, rows_text, weights)
    entropy = None
    if record:
        entropy = _cond_entropy(out.records, out.record_sites, denoiser.site_table, pairs)
    return out.latents, entropy


def _step_scales(schedule: Schedule, guidance_scale: float, dynamic: bool):
    """ω: ``guidance_scale`` itself, or with ``dynamic`` CogVideoX's float32 [steps] dynamic-CFG scales."""
    if not dynamic:
        return guidance_scale
    if guidance_scale <= 1:
        raise EditError(f"dynamic CFG needs a guidance scale above 1 (diffusers applies CFG only then), got {guidance_scale}")
    return dynamic_cfg_scales(schedule.timesteps, guidance_scale)


def _cond_entropy(records, record_sites, table, pairs: int) -> np.ndarray:
    """[P, sites] entropy of each pair's conditional row averaged over steps; the conditional rows are the last P."""
    if records is None:
        raise EditError("profile='run' needs a run that records entropy")
    mean = np.asarray(records.entropy, np.float64).mean(axis=0)  # [recorded sites, R]
    entropy = np.full((pairs, len(table)), np.nan)
    positions = [table.index(name) for name in record_sites]
    entropy[:, positions] = mean[:, -pairs:].T
    return entropy


@jit_method(announce="the VAE encoder")
def _encode(vae, frames):
    return vae.encode_frames(frames).mode()  # [F, h, w, C]


def encode_video(vae, video: np.ndarray) -> jax.Array:
    """float32 clean latents [f, h, w, C] (times the VAE scaling factor) of a uint8 video [F, H, W, 3]: f = F for an
    image VAE (AnimateDiff), (F − 1)/4 + 1 for CogVideoX's causal 3D VAE (frame-chunked, as diffusers encodes)."""
    frames = jnp.asarray(video, jnp.float32) / 127.5 - 1.0  # [F, H, W, 3] in [-1, 1]
    return _encode(vae, frames).astype(jnp.float32) * vae.config.scaling_factor


def decode_latents(vae, latents) -> np.ndarray:
    """uint8 [F, H, W, 3] video of latents [f, h, w, C] (times the VAE scaling factor)."""
    return np.asarray(decode_video(vae, jnp.asarray(latents) / vae.config.scaling_factor))


def _time_ratio(components) -> int:
    """How many frames the VAE packs into one latent frame after the first (1 for an image VAE, 4 for CogVideoX's)."""
    return int(getattr(components.vae.config, "temporal_compression_ratio", 1))


def _check_frames(components, num_frames: int) -> None:
    """Raise :class:`EditError` unless a real video of ``num_frames`` frames comes back from the VAE whole."""
    ratio = _time_ratio(components)
    if (num_frames - 1) % ratio:
        fewer = (num_frames - 1) // ratio * ratio + 1
        raise EditError(f"the VAE compresses time {ratio}x (frame 1, then {ratio} frames per latent frame), so a real "
                        f"video needs {ratio}k + 1 frames; got {num_frames}: use {fewer} (--frames {fewer})")


def _latent_frame_mask(mask: np.ndarray, frames: int, ratio: int) -> np.ndarray:
    """[f, H, W] a pixel mask [F, H, W] over f latent frames of a VAE packing ``ratio`` frames into each latent
    frame after the first: frame 0 alone, then groups of ``ratio`` frames averaged (frames past the
    1 + (f − 1)·ratio the video decodes to are dropped)."""
    kept = mask[1:1 + (frames - 1) * ratio]  # [(f - 1)·ratio, H, W]
    grouped = kept.reshape((frames - 1, ratio) + mask.shape[1:]).mean(axis=1)  # [f - 1, H, W]
    return np.concatenate([mask[:1], grouped])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 videos (peak 255); +inf when they are equal."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def edit(
    components,
    source: str,
    target: str,
    *,
    video: np.ndarray | None = None,
    method: str = "ieadapt",
    ratio: float = DEFAULT_RATIO,
    sites=None,
    window: tuple[int, int] | None = None,
    profile: str = "first",
    num_frames: int = 16,
    height: int = 512,
    width: int = 512,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    use_dynamic_cfg: bool = False,
    negative_prompt: str = "",
    seed: int = 0,
    mask=None,
    mask_words: str | None = None,
    drive_source: bool = True,
    backend: str = "auto",
    progress: bool = True,
) -> EditResult:
    """Edit one video from ``source`` to ``target`` (module docstring): a generated one, or ``video``.

    Args:
        components: pipeline components (``load_animatediff``, ``load_cogvideox``, ``toy.load_default``, ...).
        source, target: the source and target prompts.
        video: uint8 [F, H, W, 3] a real video to edit (``ieadapt_jax.video_io.read_video`` at the model's
            size), or None to generate the source from ``seed`` (Algorithm 1). CogVideoX's VAE compresses time
            4x, so there F must be 4k + 1 (9, 13, ..., 49) for the edit to have the input's frames.
        method, ratio, sites, window, profile: see :func:`edit_batch`.
        num_frames, height, width: the generated video's size (a real video's own size is used); CogVideoX
            makes (F − 1)//4 + 1 latent frames, decoded to 4·that − 3 frames (F itself when F = 4k + 1).
        num_inference_steps, guidance_scale, negative_prompt: DDIM steps (:func:`ddim_config`; for a real video
            :func:`inversion_config`; CogVideoX DDIM with v-prediction on CogVideoX), ω and φ.
        use_dynamic_cfg: CogVideoX's dynamic CFG (ω per step; see :func:`edit_batch`).
        seed: seeds the noise (generated videos) and the word-influence mask.
        mask: float [F, H, W] in [0, 1] a pixel-resolution mask of the region to edit (``video_io.read_mask``);
            the background outside it is kept from the source. None: no blending.
        mask_words: source-prompt words whose influence gives the mask instead (:mod:`.masks`).
        drive_source: for a real video, drive the source rows with the inversion trajectory (exact source).
        backend, progress: attention backend; progress bars.

    Raises:
        EditError: bad method, ratio, window, profile, mask or misaligned P2P prompts;
        ieadapt_jax.pipeline.PipelineError: bad size or too-long prompt.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    denoiser, vae = components.denoiser, components.vae
    config = ddim_config(components.scheduler_config) if video is None else inversion_config(components.scheduler_config)
    schedule = make_schedule(config, num_inference_steps)
    input_video = None
    inversion = None
    if video is not None:
        input_video = np.asarray(video)
        if input_video.ndim != 4 or input_video.shape[-1] != 3 or input_video.dtype != np.uint8:
            raise EditError(f"video must be uint8 [F, H, W, 3], got {input_video.dtype} {list(input_video.shape)}")
        num_frames, height, width = input_video.shape[:3]
        _check_frames(components, num_frames)
    latent_h, latent_w = latent_size(components, height, width)
    shape = (latent_frames(components, num_frames), latent_h, latent_w, denoiser.config.in_channels)
    check_ratio(ratio)
    check_window(window, num_inference_steps, what="injection window", error=EditError)
    check_applies(denoiser, method)
    _step_scales(schedule, guidance_scale, use_dynamic_cfg)
    if method == "p2p":
        check_p2p_prompts(components.tokenizer, source, target)
    if mask_words is not None:
        word_positions(components.tokenizer, source, mask_words)
    if sites is not None:
        resolve_sites(denoiser.site_table, sites)

    pixel_mask = None
    if mask is not None:
        pixel_mask = np.asarray(mask, np.float32)
        if pixel_mask.shape != (num_frames, height, width):
            raise EditError(f"mask must be [F, H, W] = {[num_frames, height, width]}, got {list(pixel_mask.shape)}")
        pixel_mask = _latent_frame_mask(pixel_mask, shape[0], _time_ratio(components))  # [f, H, W]
        pixel_mask = latent_mask(pixel_mask, (latent_h, latent_w))[None]  # [1, f, h, w]

    tick = time.perf_counter()
    metrics: dict[str, float] = {}
    if input_video is not None:
        x0 = encode_video(vae, input_video)  # [f, h, w, C]
        timings["encode"] = time.perf_counter() - tick
        metrics["vae_psnr"] = psnr(input_video, decode_latents(vae, x0))
        tick = time.perf_counter()
        _, src_text = encode_text(components, [source], negative_prompt)
        inversion = invert(denoiser, schedule, x0[None], src_text, record="self" if profile == "run" else False,
                           backend=backend, progress=progress)
        x_t = inversion.noise  # [1, f, h, w, C]
        timings["invert"] = time.perf_counter() - tick
    else:
        noise = jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32)
        x_t = noise[None] * schedule.init_noise_sigma  # [1, f, h, w, C]

    batch = edit_batch(components, [source], [target], x_t, schedule, method=method, ratio=ratio, sites=sites,
                       window=window, profile=profile, guidance_scale=guidance_scale, use_dynamic_cfg=use_dynamic_cfg,
                       negative_prompt=negative_prompt, inversion=inversion, drive_source=drive_source,
                       masks=pixel_mask, mask_words=mask_words, seed=seed, backend=backend, progress=progress,
                       timings=timings)
    tick = time.perf_counter()
    source_video = decode_latents(vae, batch.source_latents[0])
    edited_video = decode_latents(vae, batch.edited_latents[0])
    timings["decode"] = time.perf_counter() - tick
    if input_video is not None:
        metrics["reconstruction_psnr"] = psnr(input_video, source_video)
    timings["total"] = time.perf_counter() - start
    table = denoiser.site_table
    chosen = batch.sites[0]
    config = dict(source=source, target=target, method=method, ratio=ratio, window=window, profile=profile,
                  num_frames=num_frames, height=height, width=width, num_inference_steps=num_inference_steps,
                  guidance_scale=guidance_scale, use_dynamic_cfg=use_dynamic_cfg, negative_prompt=negative_prompt, seed=seed,
                  real_video=input_video is not None, drive_source=drive_source and input_video is not None,
                  mask="words" if mask_words else ("given" if mask is not None else None), mask_words=mask_words,
                  sites_given=sites is not None, tensors=get_method(method).tensors, rows_per_pair=ROWS_PER_PAIR,
                  scheduler=f"{config['_class_name']} on {components.scheduler_config.get('_class_name')}'s noise schedule",
                  clip_sample=bool(config.get("clip_sample", True)))
    return EditResult(
        source_video=source_video, edited_video=edited_video, input_video=input_video,
        source_latents=batch.source_latents[0], edited_latents=batch.edited_latents[0], method=method, ratio=ratio,
        sites=tuple(table[s].name for s in chosen), site_positions=chosen, entropy=batch.entropy[0],
        mask=None if batch.masks is None else batch.masks[0], metrics=metrics, timings=timings, config=config,
    )
