"""The one sampling loop: rows of one batched forward, combined per video by a weight matrix.

A run denoises V videos (latents [V, F, H, W, C]) with R model rows. Row r denoises video
``row_video[r]`` under text states ``row_text[r]`` and the attention rewiring ``rewiring[step, :, r]``;
video v's noise estimate is ε_v = Σ_r W[v, r]·ε_r. One step:

    x_rows = latents[row_video]                               # [R, F, H, W, C]
    eps_rows = unet(scale_model_input(x_rows), t, row_text, rewiring[step])
    eps = W @ eps_rows                                        # [V, F, H, W, C]
    latents = scheduler.step(latents, eps)

Classifier-free guidance is rows [φ, c] with W = [[1 − ω, ω]]; IE-Adapt adds perturbed rows
(:mod:`ieadapt_jax.guidance`); editing runs source and target videos side by side. The whole loop is
one jit-compiled ``fori_loop`` over steps, run in spans of steps with traced bounds (Ctrl-C is checked
between spans; nothing recompiles per span); the rewiring schedule, W, text and latents are traced
values, so changing them never recompiles. Only the :class:`SamplingPlan` and shapes are static.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .core.attention import Record
from .core.errors import IEAdaptError
from .core.jit import jit_method
from .core.rewiring import Rewiring, check_active, resolve_sites, validate
from .schedulers import Schedule, initial_carry, scale_model_input, step


SPAN_SECONDS = 2.0  # a span of steps runs about this long, so Ctrl-C stops a run within a few seconds


class SamplingError(IEAdaptError):
    """Inputs of a sampling run that do not fit together (shapes, rows, steps, sites)."""


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """The static part of a sampling run: changing any field recompiles, nothing else does.

    Fields:
        row_video: [R] which video's latents each model row denoises.
        record: what each step's forward records (``SiteTable.recording`` spec: False, True, a kind such as
            "self", a site name, or a tuple of names / positions).
        active: positions of the sites whose rewiring is applied (the others run plain attention with no
            row gathers), or None for every site (what a sweep over sites needs).
        backend: attention backend ("auto", "reference", "chunked", "cudnn").
        progress: show a tqdm progress bar ticked from inside the compiled loop.
        trajectory: also return the latents after every step (``SampleResult.trajectory``).
    """

    row_video: tuple[int, ...]
    record: Any = False
    active: tuple[int, ...] | None = None
    backend: str = "auto"
    progress: bool = True
    trajectory: bool = False

    @property
    def rows(self) -> int:
        """The number of model rows R."""
        return len(self.row_video)


class SampleResult(NamedTuple):
    """What :func:`sample` returns.

    latents: [V, F, H, W, C] float32 final latents; records: a :class:`Record` of [steps, recorded sites,
    rows] arrays, or None when the plan records nothing; record_sites: the recorded sites' names, in the
    order of the records' site axis; trajectory: [steps, V, F, H, W, C] float32 latents after each step
    when the plan asks for them, else None.
    """

    latents: jax.Array
    records: Record | None
    record_sites: tuple[str, ...]
    trajectory: jax.Array | None = None


class Drive(NamedTuple):
    """Videos whose latents follow a given trajectory: after step i, video ``videos[d]`` is set to
    ``latents[i, d]`` (e.g. a real video's stored DDIM-inversion trajectory, so that its rows see exactly
    those latents while other videos are denoised beside them).

    videos: int32 [D] video indices; latents: float32 [steps, D, F, H, W, C].
    """

    videos: jax.Array
    latents: jax.Array


class Blend(NamedTuple):
    """Latent blending after each step (and after :class:`Drive`): for each pair k,
    x[target[k]] ← m·x[target[k]] + (1 − m)·x[source[k]] with m = ``mask[i, k]`` at step i, in [0, 1]
    (1 keeps the target: the region being edited; 0 copies the source: the background kept).

    target, source: int32 [K] video indices; mask: float32 [steps, K, F, H, W, 1 or C].
    """

    target: jax.Array
    source: jax.Array
    mask: jax.Array


def make_plan(unet, row_video, *, record=False, active=None, backend: str = "auto", progress: bool = True,
              trajectory: bool = False) -> SamplingPlan:
    """A :class:`SamplingPlan` with ``record`` and ``active`` checked against ``unet.site_table``.

    ``active`` takes site names or positions (None: every site); ``trajectory`` keeps every step's latents.
    """
    table = unet.site_table
    table.recording(record)
    record = tuple(record) if isinstance(record, list) else record
    active = None if active is None else tuple(resolve_sites(table, active))
    rows = tuple(int(r) for r in np.asarray(row_video).reshape(-1))
    if not rows:
        raise SamplingError("a sampling run needs at least one model row")
    return SamplingPlan(row_video=rows, record=record, active=active, backend=backend, progress=progress,
                        trajectory=bool(trajectory))


def sample(
    unet,
    plan: SamplingPlan,
    schedule: Schedule,
    latents: jax.Array,
    row_text: jax.Array,
    weights: jax.Array,
    rewiring: Rewiring | None = None,
    key: jax.Array | None = None,
    drive: Drive | None = None,
    blend: Blend | None = None,
    span: int | None = None,
) -> SampleResult:
    """Run the whole denoising loop: one compiled loop over the steps, called on spans of steps.

    The loop's bounds are traced, so every span runs the same compiled function (nothing recompiles per span)
    and the result is bit-identical to one span over all steps. Between spans the host can be interrupted
    (Ctrl-C); spans are sized to about :data:`SPAN_SECONDS` each.

    Args:
        unet: a :class:`models.UNetMotionModel` (split once here; its parameters are traced inputs).
        plan: the static plan (:func:`make_plan`).
        schedule: from :func:`ieadapt_jax.schedulers.make_schedule`.
        latents: [V, F, H, W, C] initial latents x_T (already scaled by ``schedule.init_noise_sigma``).
        row_text: [R, L, D] text states of each row.
        weights: [V, R] combination matrix W: ε_v = Σ_r W[v, r]·ε_r; or [steps, V, R], one W per step
            (e.g. CogVideoX's dynamic CFG).
        rewiring: None, a [sites, R] rewiring used at every step, or a [steps, sites, R] schedule
            (:func:`ieadapt_jax.over_steps`). Sites outside ``plan.active`` must be left unchanged.
        key: PRNG key for stochastic schedulers (DDIM with eta > 0, CogVideoX DPM); each step gets its own
            split. Deterministic schedulers ignore it.
        drive: videos that follow a stored trajectory (:class:`Drive`), or None.
        blend: latent blending of video pairs after each step (:class:`Blend`), or None.
        span: steps per compiled call (None: sized from the measured time per step).

    Returns:
        :class:`SampleResult` with the final latents [V, F, H, W, C] float32, per-step records and, when the
        plan asks, the latents after each step.
    """
    table = unet.site_table
    latents = jnp.asarray(latents, jnp.float32)
    num_steps, rows = schedule.num_steps, plan.rows
    if latents.ndim != 5:
        raise SamplingError(f"latents must be [V, F, H, W, C], got shape {list(latents.shape)}")
    videos = latents.shape[0]
    bad_rows = [r for r in plan.row_video if not 0 <= r < videos]
    if bad_rows:
        raise SamplingError(f"row_video {list(plan.row_video)} names videos {bad_rows}; there are {videos} (0..{videos - 1})")
    row_text = jnp.asarray(row_text)
    if row_text.ndim != 3 or row_text.shape[0] != rows:
        raise SamplingError(f"row_text must be [R={rows}, L, D] (one text per model row), got shape {list(row_text.shape)}")
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape not in ((videos, rows), (num_steps, videos, rows)):
        raise SamplingError(
            f"weights must be [V={videos}, R={rows}] (one row of W per video) or [steps={num_steps}, V, R] (one W per "
            f"step), got {list(weights.shape)}"
        )
    schedule_rw = _step_schedule(rewiring, table, plan, num_steps)
    drive, blend = _checked_guides(drive, blend, latents.shape, num_steps)
    if key is None:
        if schedule.stochastic:
            raise SamplingError(f"{schedule.class_name} as configured is stochastic: pass key= (a PRNG key)")
        key = jax.random.PRNGKey(0)
    keys = jax.random.split(key, num_steps)  # [steps] keys
    inputs = (row_text, weights, schedule_rw, keys, drive, blend)
    with _progress_bar(num_steps, plan.progress):
        state = _start(unet, plan, schedule, latents, *inputs)
        done, steps = 0, 1 if span is None else span  # the first span (1 step) also compiles
        try:
            while done < num_steps:
                stop = min(num_steps, done + steps)
                began = time.perf_counter()
                state = _span(unet, plan, schedule, state, jnp.int32(done), jnp.int32(stop), *inputs)
                jax.block_until_ready(state)  # a Ctrl-C arrives here, between spans
                if span is None:
                    steps = max(1, int(SPAN_SECONDS * (stop - done) / max(time.perf_counter() - began, 1e-6)))
                done = stop
        except KeyboardInterrupt:
            jax.block_until_ready(state)  # let the span in flight end (about SPAN_SECONDS) before unwinding
            jax.effects_barrier()
            raise
        if plan.progress:
            jax.effects_barrier()
    names = tuple(table[s].name for s in table.recording(plan.record))
    return SampleResult(state.latents, state.records, names, state.trajectory)


def _checked_guides(drive: Drive | None, blend: Blend | None, shape: tuple, num_steps: int):
    """``drive`` and ``blend`` as jax arrays, their shapes checked against latents [V, ...] and the steps."""
    videos, sample = shape[0], tuple(shape[1:])
    if drive is not None:
        drive = Drive(jnp.asarray(drive.videos, jnp.int32).reshape(-1), jnp.asarray(drive.latents, jnp.float32))
        count = drive.videos.shape[0]
        if drive.latents.shape != (num_steps, count) + sample:
            raise SamplingError(f"drive.latents must be [steps={num_steps}, D={count}, {', '.join(map(str, sample))}], "
                                f"got {list(drive.latents.shape)}")
        _check_videos("drive.videos", drive.videos, videos)
    if blend is not None:
        target, source = (jnp.asarray(x, jnp.int32).reshape(-1) for x in (blend.target, blend.source))
        mask = jnp.asarray(blend.mask, jnp.float32)
        count = target.shape[0]
        if source.shape[0] != count or mask.shape[:2] != (num_steps, count) or mask.shape[2:-1] != sample[:-1] \
                or mask.shape[-1] not in (1, sample[-1]):
            raise SamplingError(f"blend needs target and source [K] and mask [steps={num_steps}, K, "
                                f"{', '.join(map(str, sample[:-1]))}, 1 or {sample[-1]}]; got target {list(target.shape)}, "
                                f"source {list(source.shape)}, mask {list(mask.shape)}")
        _check_videos("blend.target", target, videos)
        _check_videos("blend.source", source, videos)
        blend = Blend(target, source, mask)
    return drive, blend


def _check_videos(name: str, index: jax.Array, videos: int) -> None:
    bad = [int(v) for v in np.asarray(index) if not 0 <= v < videos]
    if bad:
        raise SamplingError(f"{name} names videos {bad}; there are {videos} (0..{videos - 1})")


def _step_schedule(rewiring: Rewiring | None, table, plan: SamplingPlan, num_steps: int) -> Rewiring | None:
    """The rewiring as a [steps, sites, R] schedule (or None), checked against the table and the plan."""
    if rewiring is None:
        return None
    validate(rewiring, table, plan.rows)
    lead = rewiring.lead_shape
    if lead == ():
        rewiring = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_steps,) + x.shape), rewiring)
    elif lead != (num_steps,):
        raise SamplingError(
            f"rewiring has leading axes {lead}; a schedule for this run needs [steps={num_steps}, sites, rows] "
            "(ia.over_steps) or no leading axis"
        )
    if plan.active is not None and not isinstance(rewiring.q_from, jax.core.Tracer):
        check_active(rewiring, table, plan.active)
    return rewiring.device()


class LoopState(NamedTuple):
    """What the loop carries from step to step (and from span to span).

    latents: [V, F, H, W, C] float32; carry: the scheduler's carry; records: a :class:`Record` of [steps, recorded
    sites, R] buffers filled step by step, or None; trajectory: [steps, V, F, H, W, C] float32 or None.
    """

    latents: jax.Array
    carry: Any
    records: Record | None
    trajectory: jax.Array | None


@jit_method(static_argnames=("plan",))
def _start(model, plan: SamplingPlan, schedule, latents, row_text, weights, rewiring, keys, drive, blend):
    return start_state(model, plan, schedule, latents, row_text, weights, rewiring, keys, drive, blend)


@jit_method(static_argnames=("plan",), announce="the sampling loop")
def _span(model, plan: SamplingPlan, schedule, state, start, stop, row_text, weights, rewiring, keys, drive, blend):
    return denoise_span(model, plan, schedule, state, start, stop, row_text, weights, rewiring, keys, drive, blend)


def _step_function(model, plan: SamplingPlan, schedule: Schedule, row_text, weights, rewiring, keys, drive, blend):
    """``one(i, x, carry) -> (x, carry, record)``: denoising step ``i`` of the loop (module docstring)."""
    row_video = jnp.asarray(plan.row_video, jnp.int32)  # [R]

    def one(i, x, carry):  # x [V, F, H, W, C] float32
        rw = None if rewiring is None else jax.tree_util.tree_map(lambda a: a[i], rewiring)  # [sites, R]
        x_rows = scale_model_input(schedule, i, x[row_video])  # [R, F, H, W, C]
        t = jnp.broadcast_to(schedule.timesteps[i], (plan.rows,))  # [R]
        eps_rows, rec = model(x_rows, t, row_text, rw, record=plan.record, backend=plan.backend, active=plan.active)
        w = weights if weights.ndim == 2 else weights[i]  # [V, R]
        eps = jnp.einsum("vr,r...->v...", w, eps_rows.astype(jnp.float32))  # [V, F, H, W, C]
        x, carry = step(schedule, i, x, eps, carry, keys[i])
        if drive is not None:
            x = x.at[drive.videos].set(drive.latents[i])
        if blend is not None:
            m = blend.mask[i]  # [K, F, H, W, 1 or C]
            x = x.at[blend.target].set(m * x[blend.target] + (1.0 - m) * x[blend.source])
        if plan.progress:
            jax.debug.callback(_tick, ordered=True)
        return x, carry, rec

    return one


def start_state(model, plan: SamplingPlan, schedule: Schedule, latents, row_text, weights, rewiring, keys, drive=None,
                blend=None) -> LoopState:
    """The loop's state before step 0: the latents, the scheduler's initial carry and empty record and
    trajectory buffers (their shapes from one abstract step). Traceable; arguments as in :func:`denoise`."""
    one = _step_function(model, plan, schedule, row_text, weights, rewiring, keys, drive, blend)
    carry = initial_carry(schedule, latents)
    steps = schedule.num_steps
    record = jax.eval_shape(lambda: one(0, latents, carry)[2])
    # 0, typed like the latents: inside shard_map (a sweep) the buffers must vary over the same mesh axes as what
    # the steps write into them, which all derive from the latents; a plain constant would not
    zero = jnp.where(True, 0.0, jnp.ravel(latents)[0])
    records = None if record is None else jax.tree_util.tree_map(
        lambda r: jnp.broadcast_to(zero.astype(r.dtype), (steps,) + r.shape), record)  # [steps, recorded sites, R]
    trajectory = jnp.broadcast_to(zero, (steps,) + latents.shape) if plan.trajectory else None
    return LoopState(latents, carry, records, trajectory)


def denoise_span(model, plan: SamplingPlan, schedule: Schedule, state: LoopState, start, stop, row_text, weights,
                 rewiring, keys, drive=None, blend=None) -> LoopState:
    """Steps ``start <= i < stop`` of the loop on ``state`` (a ``fori_loop``; traced bounds do not recompile)."""
    one = _step_function(model, plan, schedule, row_text, weights, rewiring, keys, drive, blend)

    def body(i, s: LoopState) -> LoopState:
        x, carry, rec = one(i, s.latents, s.carry)
        records = None if rec is None else jax.tree_util.tree_map(lambda buf, r: buf.at[i].set(r), s.records, rec)
        trajectory = None if s.trajectory is None else s.trajectory.at[i].set(x)
        return LoopState(x, carry, records, trajectory)

    return jax.lax.fori_loop(start, stop, body, state)


def denoise(model, plan: SamplingPlan, schedule: Schedule, latents, row_text, weights, rewiring, keys, drive=None,
            blend=None):
    """The loop itself as a traceable function: :func:`start_state`, then one :func:`denoise_span` over all steps.

    For callers that compose the loop into a larger compiled function, e.g. a sweep that vmaps it over
    a leading configuration axis (:mod:`ieadapt_jax.sweep`). Arguments as in :func:`sample`, already
    checked: latents [V, F, H, W, C] float32, row_text [R, L, D], weights [V, R] or [steps, V, R], rewiring None or a
    [steps, sites, R] schedule, keys [steps] PRNG keys, drive / blend None or checked :class:`Drive` /
    :class:`Blend`. Returns (latents [V, F, H, W, C], records or None), and the trajectory [steps, V, F, H, W, C]
    as a third element when ``plan.trajectory``.
    """
    inputs = (row_text, weights, rewiring, keys, drive, blend)
    state = start_state(model, plan, schedule, latents, *inputs)
    state = denoise_span(model, plan, schedule, state, 0, schedule.num_steps, *inputs)
    return (state.latents, state.records, state.trajectory) if plan.trajectory else (state.latents, state.records)


_BAR: list = []  # the progress bar of the run in flight (the compiled loop's callback ticks it)


def _tick() -> None:
    if _BAR:
        _BAR[-1].update(1)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool):
    if not enabled:
        yield
        return

    bar = tqdm(total=total, desc="sampling", unit="step")
    _BAR.append(bar)
    try:
        yield
    finally:
        _BAR.remove(bar)
        bar.close()
