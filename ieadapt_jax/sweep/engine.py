"""Running a sweep: chunks of configurations, vmapped through the one sampling loop, sharded over every device.

    run_sweep(components, definition, "runs/sweep")     # resumable; returns the output folder

**One compiled function per phase of work.** A chunk of configurations is a leading config axis on the
inputs of :func:`ieadapt_jax.sampling.denoise`: noise keys [c, 2], prompt indices [c] and rewiring
schedules [c, steps, sites, rows]. ``jax.vmap`` runs the loop over that axis, the VAE decodes the videos
one at a time (``lax.map``, bounding memory), and a second compiled function measures them against their
baselines (:mod:`.metrics`). Both are ``shard_map`` s over a 1-D mesh of all devices (``jax.sharding``): the
config axis is split evenly, parameters and prompt embeddings are replicated, and no device talks to another,
so a configuration's result does not depend on the number of devices. Every chunk has the same shape (the
last is padded with repeats, dropped after), so the whole sweep compiles each function once.

**Order.** Phase 1 generates the baselines (one per prompt and seed; their entropy resolves ``entropy:``
targets), phase 2 the perturbed configurations, in sweep order. Results are appended chunk by chunk
(:mod:`.store`); a rerun skips finished configurations.

**Determinism.** Every video's noise is ``jax.random.normal(PRNGKey(seed), ...)`` and its scheduler key
``fold_in(PRNGKey(seed), 1)``, as :func:`ieadapt_jax.text_to_video` draws them, so a baseline equals that
function's video of the same prompt and seed (to float rounding of the batched computation).

**Chunk size** (configurations per device per chunk): an integer, or "auto": on an accelerator, a one-config
probe is compiled and its memory need read (``memory_analysis``), and the chunk fills 90% of the free device
memory (capped at :data:`MAX_AUTO_CHUNK`); on CPU, :data:`CPU_CHUNK`.

**Multi-host.** Call :func:`initialize_distributed` first (``jax.distributed``). Every process builds the same
chunks; global arrays are assembled from each process's shards; outputs are all-gathered; process 0 writes.
The output folder must be on a filesystem every process sees.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ..core.errors import IEAdaptError
from ..core.jit import merge, split
from ..pipeline import decode_video, encode_prompts, latent_frames, latent_size
from ..sampling import SamplingPlan, denoise, make_plan
from ..schedulers import make_schedule
from ..toy.model import ToyTokenizer
from .definition import (
    BASELINE,
    KIND_ALIASES,
    Config,
    SweepDefinition,
    config_rewiring,
    expand,
    expand_targets,
    parse_target,
    resolve_target,
)
from .metrics import Metric, import_plugins, measure, select_metrics, setup_metrics
from .store import ResultStore, baseline_path, video_path
from .weighted_metrics import register_sweep_metrics

AXIS = "configs"
CPU_CHUNK = 4
MAX_AUTO_CHUNK = 32
THUMBNAIL_SIDE = 128
RECORD_FIELDS = ("entropy", "energy", "energy_identity", "energy_uniform", "energy_ratio")


class SweepRunError(IEAdaptError):
    """Options of a sweep run that cannot work (bad chunk size, device count, model/definition mismatch)."""


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """What :func:`run_sweep` did: the output folder, configurations done before / now / in all, seconds,
    the chunk size per device, the device count, and whether it stopped early (``stop_after``)."""

    out: Path
    done_before: int
    done_now: int
    total: int
    seconds: float
    chunk: int
    devices: int
    stopped: bool


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Join a multi-host run with ``jax.distributed.initialize`` (no arguments: the cluster's auto-detection,
    e.g. SLURM or Cloud TPU). Call it before any other JAX work."""
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def is_toy(components) -> bool:
    """Whether ``components`` is a toy-world model (its tokenizer is the toy one)."""

    return isinstance(components.tokenizer, ToyTokenizer)


def scheduler_config(components, definition: SweepDefinition) -> dict:
    """The model's scheduler config, with the class overridden for ``definition.scheduler`` "ddim" / "euler"."""
    config = dict(components.scheduler_config)
    if definition.scheduler == "ddim":
        config["_class_name"] = "DDIMScheduler"
    elif definition.scheduler == "euler":
        config["_class_name"] = "EulerDiscreteScheduler"
    return config


def manifest(components, definition: SweepDefinition, metrics: Sequence[Metric]) -> dict:
    """The sweep's identity for resuming: definition, model fingerprint, site table, metrics, recorded sites."""
    denoiser = components.denoiser
    table = denoiser.site_table
    params = nnx.state(denoiser, nnx.Param)
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    dtypes = sorted({str(x.dtype) for x in jax.tree.leaves(params)})
    recorded = table.recording("self") if definition.record == "self" else ()
    return {
        "definition": definition.as_dict(),
        "model": {"path": str(components.path), "parameters": count, "dtypes": dtypes, "toy": is_toy(components)},
        "sites": [{"name": s.name, "kind": s.kind, "kind_index": s.kind_index} for s in table],
        "recorded_sites": [table[s].name for s in recorded],
        "metrics": {m.name: {"columns": list(m.columns), "pairwise": m.pairwise, "description": m.description}
                    for m in metrics},
    }


def run_sweep(
    components,
    definition: SweepDefinition,
    out: str | os.PathLike,
    *,
    metrics: Sequence[str] | None = None,
    metrics_weights: str | os.PathLike | None = None,
    metrics_plugins: Sequence[str] = (),
    chunk: int | str = "auto",
    devices: int | None = None,
    keep_videos: int = 1,
    backend: str = "auto",
    progress: bool = True,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> SweepRun:
    """Generate and measure every configuration of ``definition`` not yet in ``out``; append the results.

    Args:
        components: :class:`ieadapt_jax.AnimateDiffComponents` (AnimateDiff or a toy model) or
            :class:`ieadapt_jax.CogVideoXComponents`.
        definition: the sweep (:class:`SweepDefinition`).
        out: output folder (created, or resumed if it holds the same sweep).
        metrics: metric names (None: every registered metric that applies; see :mod:`.metrics`).
        metrics_weights: the weights folder of :mod:`ieadapt_jax.scoring` (CLIP score, aesthetic score, subject
            consistency, LPIPS are measured where their weights are in it), also the root of plug-ins' ``weights``.
        metrics_plugins: modules to import first (they register metrics).
        chunk: configurations per device per chunk, or "auto" (module docstring).
        devices: use the first N local devices (None: all devices of all processes).
        keep_videos: keep thumbnails of every video of the first N prompts (first seed) for the video grid.
        backend: attention backend.
        progress: show a progress bar with ETA over all configurations.
        stop_after: stop after this many chunks of this run (tests simulate a kill with it).
        log: where messages go.
    """
    start = time.perf_counter()
    import_plugins(metrics_plugins)
    if metrics_weights is not None:  # the paper's weight-based metrics (ieadapt_jax.scoring) found in the folder

        register_sweep_metrics(metrics_weights, log=log)
    denoiser = components.denoiser
    table = denoiser.site_table
    toy = is_toy(components)
    chosen = select_metrics(metrics, toy=toy, weights_dir=metrics_weights, log=log)
    baselines, perturbed = expand(definition, table)
    mesh = _mesh(devices)
    # the whole definition is checked (steps, scheduler, prompt vocabulary, metrics) before the folder is made
    rows = definition.rows
    cond_row = [text for text, _ in rows].index("cond")
    plan = make_plan(denoiser, [0] * len(rows), record="self" if definition.record == "self" else False,
                     active=_active_sites(definition, table), backend=backend, progress=False)
    schedule = make_schedule(scheduler_config(components, definition), definition.num_inference_steps, eta=definition.eta)
    latent_shape = _latent_shape(components, definition)
    texts = encode_prompts(components, list(definition.prompts) + [definition.negative_prompt], None)  # [P + 1, L, D]
    states = setup_metrics(chosen, metrics_weights, definition.prompts)

    writer = jax.process_index() == 0
    if not writer:
        _barrier("sweep: manifest written")  # process 0 creates or checks the folder first
    store = ResultStore(out, manifest(components, definition, chosen), writer=writer)
    if writer:
        _barrier("sweep: manifest written")
    done = _agreed_done(store, baselines + perturbed)
    total = len(baselines) + len(perturbed)
    done_before = sum(1 for c in baselines + perturbed if c.key in done)

    replicated = NamedSharding(mesh, P())
    model_structure, model_state = split(denoiser)
    vae_structure, vae_state = split(components.vae)
    constants = jax.device_put((model_state, vae_state, texts, states, schedule), replicated)
    generate = _generate_fn(mesh, model_structure, vae_structure, plan, latent_shape, tuple(map(float, definition.weights)),
                            tuple(text == "cond" for text, _ in rows), len(definition.prompts),
                            definition.num_inference_steps, cond_row, float(components.vae.config.scaling_factor))
    measure_chunk = _measure_fn(mesh, tuple(chosen))
    per_device = _chunk_size(chunk, mesh, generate, constants, definition, table, log)
    size = per_device * mesh.size

    runner = _ChunkRunner(generate, measure_chunk, constants, size, definition, table, mesh, store, keep_videos)
    bar = _progress(total, done_before, progress and writer)
    chunks_run = 0
    stopped = False
    try:
        for phase in ("baselines", "perturbed"):
            reference = None  # baselines are measured against themselves
            if phase == "perturbed":
                _barrier("sweep: baselines written")  # every process reads the baseline videos process 0 wrote
                perturbed = _resolve_entropy_targets(perturbed, _baseline_entropy(done, baselines, table), table)
                reference = {(c.prompt_index, c.seed): store.load_video(baseline_path(c.prompt_index, c.seed))
                             for c in baselines}
            pending = [c for c in (baselines if phase == "baselines" else perturbed) if c.key not in done]
            for group in _chunks(pending, size):
                if stop_after is not None and chunks_run >= stop_after:
                    stopped = True
                    break
                done.update({r["key"]: r for r in runner.run(group, reference)})
                chunks_run += 1
                bar.update(len(group))
            if stopped:
                break
    finally:
        bar.close()
    done_now = sum(1 for c in baselines + perturbed if c.key in done) - done_before
    return SweepRun(Path(out), done_before, done_now, total, time.perf_counter() - start, per_device, mesh.size, stopped)


@dataclasses.dataclass(frozen=True)
class _ChunkRunner:
    """Generates, measures and appends one chunk of configurations (what every chunk of both phases does)."""

    generate: Callable
    measure: Callable
    constants: tuple
    size: int
    definition: SweepDefinition
    table: object
    mesh: Mesh
    store: ResultStore
    keep_videos: int

    def run(self, group: Sequence[Config], reference: dict | None) -> list[dict]:
        """The appended rows of ``group``. ``reference``: (prompt, seed) -> baseline video, or None when the
        group are baselines (measured against themselves, their videos saved, their records kept per step)."""
        keys, prompt, rewiring = _chunk_inputs(group, self.size, self.definition, self.table)
        videos, records = self.generate(self.constants, *(_global(x, self.mesh) for x in (keys, prompt, rewiring)))
        if reference is None:
            base = videos
        else:
            base = _global(np.stack([reference[(c.prompt_index, c.seed)] for c in _padded(group, self.size)]), self.mesh)
        values = _to_host(self.measure(self.constants, videos, base, _global(prompt, self.mesh)))
        kept = [c.prompt_index < self.keep_videos and c.seed == self.definition.seeds[0] for c in group]
        host_videos = _to_host(videos) if reference is None or any(kept) else None
        host_records = _to_host(records)
        rows = []
        for i, config in enumerate(group):
            if reference is None:
                self.store.save_video(baseline_path(config.prompt_index, config.seed), host_videos[i])
            video = self.store.save_video(video_path(config.index), thumbnail(host_videos[i])) if kept[i] else None
            rows.append(_row(config, self.table, values, host_records[i], i, by_step=reference is None, video=video))
        self.store.append(rows)
        return rows

# ------------------------------------------------------------------------------------ compiled functions


@functools.lru_cache(maxsize=8)
def _generate_fn(mesh: Mesh, model_structure, vae_structure, plan: SamplingPlan, latent_shape: tuple, weights: tuple,
                 text_row: tuple, negative: int, steps: int, cond_row: int, scaling_factor: float):
    """jit(shard_map(...)): (constants, keys [n, 2], prompt [n], rewiring [n, steps, S, R]) ->
    (videos uint8 [n, F, H, W, 3], records float32 [n, steps, recorded sites, 5] of the conditional row).

    Static: the rows' CFG ``weights`` [R], ``text_row`` [R] (True where a row reads the prompt, else the negative
    prompt, text-bank index ``negative``). Cached, so sweeps of one model and shape share one compilation.
    """

    def body(constants, keys, prompt, rewiring):
        model_state, vae_state, texts, _, schedule = constants
        model = merge(model_structure, model_state)
        w = jnp.asarray(weights, jnp.float32)[None, :]  # [1, R]

        def one(key, p, rw):
            noise = jax.random.normal(key, latent_shape, jnp.float32)  # [F, h, w, C]
            x_t = noise[None] * schedule.init_noise_sigma  # [1, F, h, w, C]
            row_text = texts[jnp.where(jnp.asarray(text_row), p, negative)]  # [R, L, D]
            step_keys = jax.random.split(jax.random.fold_in(key, 1), steps)
            latents, records = denoise(model, plan, schedule, x_t, row_text, w, rw, step_keys)
            if records is None:
                stacked = jnp.zeros((steps, 0, len(RECORD_FIELDS)), jnp.float32)
            else:
                stacked = jnp.stack([getattr(records, f)[..., cond_row] for f in RECORD_FIELDS], -1)  # [steps, S', 5]
            return latents[0], stacked.astype(jnp.float32)

        latents, records = jax.vmap(one)(keys, prompt, rewiring)  # [c, F, h, w, C], [c, steps, S', 5]
        videos = jax.lax.map(lambda z: decode_video.pure(vae_structure, vae_state, z / scaling_factor), latents)
        return videos, records

    sharded = P(AXIS)
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(), sharded, sharded, sharded),
                                 out_specs=(sharded, sharded)))


@functools.lru_cache(maxsize=8)
def _measure_fn(mesh: Mesh, metrics: tuple[Metric, ...]):
    """jit(shard_map(...)): (constants, videos [n, ...], baselines [n, ...], prompt [n]) -> {column: [n]}."""

    def body(constants, videos, baselines, prompt):
        states = constants[3]
        return jax.lax.map(lambda args: measure(metrics, states, *args), (videos, baselines, prompt))

    sharded = P(AXIS)
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(), sharded, sharded, sharded), out_specs=sharded))

# ------------------------------------------------------------------------------------------- chunk I/O


def _chunk_inputs(group: Sequence[Config], size: int, definition: SweepDefinition, table):
    padded = _padded(group, size)
    keys = np.stack([np.asarray(jax.random.PRNGKey(c.seed)) for c in padded])  # [n, 2] uint32
    prompt = np.asarray([c.prompt_index for c in padded], np.int32)  # [n]
    rewiring = [config_rewiring(definition, table, c) for c in padded]  # each [steps, S, R]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *rewiring)  # [n, steps, S, R]
    return keys, prompt, stacked


def _global(tree, mesh: Mesh):
    """Host arrays (the same full value on every process) as global arrays sharded on the config axis."""
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]), tree)


def _to_host(tree):
    """Global (sharded) arrays as full numpy arrays on every process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def _padded(group: Sequence[Config], size: int) -> list[Config]:
    return list(group) + [group[-1]] * (size - len(group))


def _chunks(items: Sequence[Config], size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]

# ---------------------------------------------------------------------------------------------- rows


def _row(config: Config, table, values: dict, records: np.ndarray, i: int, *, by_step: bool, video: str | None) -> dict:
    """The results line of one configuration (chunk position ``i``; ``records`` [steps, S', 5] its own):
    identity, metrics, step-mean records (and per step for baselines)."""
    row = {
        "key": config.key, "index": config.index, "prompt_index": config.prompt_index, "seed": config.seed,
        "target": config.target, "mode": config.mode, "sites": [table[s].name for s in config.sites or ()],
        "video": video, "metrics": {c: float(v[i]) for c, v in values.items()},
    }
    if records.shape[1]:
        row["records"] = {f: records[..., j].mean(0).tolist() for j, f in enumerate(RECORD_FIELDS)}
        if by_step:
            row["records_by_step"] = {f: records[..., j].tolist() for j, f in enumerate(RECORD_FIELDS)}
    return row


def thumbnail(video: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """uint8 [F, h, w, 3]: ``video`` shrunk by an integer factor (block mean) so that its larger side is <= ``side``."""
    factor = max(1, math.ceil(max(video.shape[1:3]) / side))
    if factor == 1:
        return video
    f, h, w, c = video.shape
    h2, w2 = h // factor, w // factor
    blocks = video[:, :h2 * factor, :w2 * factor].reshape(f, h2, factor, w2, factor, c)  # [F, h, k, w, k, 3]
    return np.round(blocks.astype(np.float32).mean(axis=(2, 4))).astype(np.uint8)

# ------------------------------------------------------------------------------------------- helpers


def _mesh(devices: int | None) -> Mesh:
    if devices is None:
        chosen = jax.devices()
    else:
        local = jax.local_devices()
        if not 1 <= devices <= len(local):
            raise SweepRunError(f"devices={devices}: this process has {len(local)} local devices")
        if jax.process_count() > 1:
            raise SweepRunError("devices= picks local devices; a multi-host run uses every device of every process")
        chosen = local[:devices]
    return Mesh(np.asarray(chosen), (AXIS,))


def _barrier(name: str) -> None:
    """Wait for every process of a multi-host run (nothing to wait for in a single process)."""
    if jax.process_count() > 1:

        multihost_utils.sync_global_devices(name)


def _agreed_done(store: ResultStore, configs: Sequence[Config]) -> dict:
    """The finished rows, as process 0 reads them (every process of a multi-host run agrees on the plan)."""
    done = store.done()
    if jax.process_count() == 1:
        return done

    mask = np.asarray([c.key in done for c in configs], np.int32)
    agreed = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    return {c.key: done[c.key] for c, d in zip(configs, agreed) if d and c.key in done}


def _active_sites(definition: SweepDefinition, table) -> tuple[int, ...]:
    """Every site some configuration may perturb (the plan's static active set)."""
    sites: set[int] = set()
    for target, chosen in expand_targets(definition.targets, table):
        if chosen is None:  # entropy: target, resolved per prompt among its kinds
            _, args = parse_target(target)
            kinds = KIND_ALIASES[args[2]] if len(args) > 2 else KIND_ALIASES["self"]
            chosen = table.select(kind=list(kinds))
        sites.update(chosen)
    return tuple(sorted(sites))


def _latent_shape(components, definition: SweepDefinition) -> tuple[int, int, int, int]:
    h, w = latent_size(components, definition.height, definition.width)
    return (latent_frames(components, definition.num_frames), h, w, components.denoiser.config.in_channels)


def _baseline_entropy(done: dict, baselines: Sequence[Config], table) -> dict:
    """(prompt, seed) -> [sites] entropy of the baseline (mean over steps; NaN where not recorded)."""
    out = {}
    for c in baselines:
        row = done[c.key]
        entropy = np.full(len(table), np.nan)
        if "records" in row:
            entropy[list(table.recording("self"))] = row["records"]["entropy"]
        out[(c.prompt_index, c.seed)] = entropy
    return out


def _resolve_entropy_targets(perturbed: Sequence[Config], entropy: dict, table) -> list[Config]:
    return [c if c.sites is not None else
            dataclasses.replace(c, sites=resolve_target(c.target, table, entropy[(c.prompt_index, c.seed)]))
            for c in perturbed]


def _chunk_size(chunk, mesh: Mesh, generate, constants, definition, table, log) -> int:
    """Configurations per device per chunk: ``chunk`` itself, or "auto" (module docstring)."""
    if chunk != "auto":
        try:
            value = int(chunk)
        except (TypeError, ValueError):
            value = 0
        if value < 1:
            raise SweepRunError(f"chunk must be a positive integer or 'auto', got {chunk!r}")
        return value
    device = mesh.devices.flat[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if not stats or "bytes_limit" not in stats:
        return CPU_CHUNK
    probe = Config(0, "probe", 0, 0, BASELINE, "A", ())
    keys, prompt, rewiring = _chunk_inputs([probe], mesh.size, definition, table)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, P(AXIS))),
                            (keys, prompt, rewiring))
    analysis = generate.lower(constants, *abstract).compile().memory_analysis()
    if analysis is None:
        return CPU_CHUNK
    need = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    value = int(max(1, min(MAX_AUTO_CHUNK, 0.9 * free // max(need, 1))))
    log(f"chunk auto: one configuration needs {need / 2**30:.2f} GiB of {free / 2**30:.1f} GiB free per device "
        f"-> {value} per device")
    return value


def _progress(total: int, initial: int, enabled: bool):

    return tqdm(total=total, initial=initial, desc="sweep", unit="video", disable=not enabled, smoothing=0.1)
