"""Training the toy text-to-video model: data drawn on the device, one jitted step, resumable from orbax.

    run = train(TrainConfig(steps=3000, batch=64), "runs/toy", max_minutes=6)
    export(run.out, "runs/toy/model")

Data parallel: the batch is split over ``devices`` (all local devices by default; the batch must divide
evenly) and the parameters are replicated; the step is one program for the whole mesh, so the result
does not depend on the device count beyond float summation order.

A run folder holds ``run.json`` (the :class:`TrainConfig`), ``checkpoints/`` (orbax: fp32 parameters,
optimizer state and step), ``loss.jsonl`` (one line per logged step) and ``loss.png``. Rerunning with the
same folder continues from the latest checkpoint; the step's PRNG key is ``fold_in(seed, step)``, so a
resumed run is bit-identical to an uninterrupted one (same config, same device kind).

One step: draw training attributes (:func:`world.train_attributes`), render them ([B, 16, 32, 32, 3] in
[0, 1], scaled to [-1, 1]), tokenize their captions on the device (:func:`.training_data.caption_ids`; a fraction
``caption_dropout`` gets the empty caption, for classifier-free guidance), noise them at uniform random
timesteps with SD's schedule and regress the UNet's ε on the noise (MSE, weighted per sample by
``loss_weighting``: "eps" weighs every timestep alike; "v" multiplies by 1/ᾱ_t, which is the v-prediction loss
written through ε, so the noisiest timesteps, where only the caption can say how an object moves, are not
drowned out by the easy ones; the model still predicts ε). ``prediction="v_prediction"`` makes the UNet
predict v = √ᾱ·ε − √(1 − ᾱ)·x0 instead (:func:`.training_data.training_target`), and ``zero_terminal_snr`` rescales SD's
schedule so that ᾱ_999 = 0: with SD's own schedule a 32x32 video keeps enough of its low frequencies at
t = 999 for the model to read each frame's object position from the noise, so the trajectory of a sample
is set by its seed rather than its caption; at zero SNR only the caption can say it. The exported
snapshot's scheduler config carries both settings, so every sampler reads them. The UNet and the text encoder
train together with AdamW (linear warmup, cosine decay to 10%, global-norm clipping) on fp32 master
parameters; the forward runs in ``precision`` (bf16 by default). ``noise`` is the
training noise (:func:`.training_data.training_noise`; sampling always starts from white noise) and ``min_timestep`` the
lowest timestep drawn. ``init_from`` starts the parameters from a toy-model snapshot folder (fine-tuning)
instead of the seed (``fresh_text_encoder``: its UNet only). An exponential moving average of the parameters
(decay ``ema_decay``, warmed up as min(decay, (1 + step) / (10 + step))) is what :func:`export` writes.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from ..convert import ConversionError
from ..core.attention import BACKENDS
from ..core.errors import IEAdaptError
from ..core.jsonfile import read_json_object
from ..schedulers import add_noise, make_schedule
from . import model as toy_model
from .training_data import NOISES, training_batch, training_noise, training_target

RUN_CONFIG = "run.json"
LOSS_LOG = "loss.jsonl"
LOSS_PLOT = "loss.png"
CHECKPOINTS = "checkpoints"
PRECISIONS = {"bf16": jnp.bfloat16, "fp32": jnp.float32}
LOSS_WEIGHTINGS = ("eps", "v")


class TrainError(IEAdaptError):
    """A run folder or setting that training cannot use."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored in the run folder's ``run.json``)."""

    arch: str = "toy"
    steps: int = 3000
    batch: int = 64
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    caption_dropout: float = 0.1
    two_object_fraction: float = 0.1
    precision: str = "bf16"
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 25
    attention_backend: str = "auto"
    ema_decay: float = 0.999
    loss_weighting: str = "eps"
    noise: str = "white"
    min_timestep: int = 0
    init_from: str | None = None
    prediction: str = "epsilon"
    zero_terminal_snr: bool = False
    fresh_text_encoder: bool = False

    def __post_init__(self):
        if self.arch not in toy_model.ARCHS:
            raise TrainError(f"unknown arch {self.arch!r}; choose one of {', '.join(toy_model.ARCHS)}")
        if self.attention_backend not in BACKENDS:
            raise TrainError(f"unknown attention backend {self.attention_backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise TrainError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        for name in ("steps", "batch", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise TrainError(f"unknown loss weighting {self.loss_weighting!r}; choose one of {', '.join(LOSS_WEIGHTINGS)}")
        if self.noise not in NOISES:
            raise TrainError(f"unknown noise {self.noise!r}; choose one of {', '.join(NOISES)}")
        if not 0 <= self.min_timestep < toy_model.SCHEDULER_CONFIG["num_train_timesteps"]:
            raise TrainError(f"min_timestep must be in [0, {toy_model.SCHEDULER_CONFIG['num_train_timesteps']}), "
                             f"got {self.min_timestep}")
        if self.fresh_text_encoder and self.init_from is None:
            raise TrainError("fresh_text_encoder keeps the UNet of init_from and draws a new text encoder: give init_from")
        try:  # the snapshot's scheduler config is the one place that knows which combinations exist
            toy_model.scheduler_config(self.prediction, self.zero_terminal_snr)
        except ValueError as e:
            raise TrainError(str(e)) from e
        if self.prediction == "v_prediction" and self.loss_weighting != "eps":
            raise TrainError("loss_weighting='v' re-weights an ε-prediction into the v loss; with prediction='v_prediction' "
                             "the loss already is the v loss (use loss_weighting='eps', the uniform weighting)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise TrainError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.caption_dropout < 1.0 or not 0.0 <= self.two_object_fraction <= 1.0:
            raise TrainError("caption_dropout must be in [0, 1) and two_object_fraction in [0, 1]")


class TrainState(NamedTuple):
    """step: int32 []; params: fp32 nnx.State of ``nnx.List([unet, text_encoder])``; opt_state: optax's;
    ema: the moving average of ``params`` (same tree)."""

    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState
    ema: nnx.State


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`train` returns: the run folder, the step reached, the last logged loss, and why it stopped."""

    out: Path
    step: int
    loss: float | None
    stopped: str

# ------------------------------------------------------------------------------------- optimisation


def learning_rate(config: TrainConfig) -> optax.Schedule:
    """Linear warmup to ``lr`` over ``warmup`` steps, then cosine decay to 10% of it at ``steps``."""
    warmup = min(config.warmup, config.steps)
    return optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, max(config.steps, warmup + 1),
                                              end_value=0.1 * config.lr)


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW with weight decay on matrices and kernels only."""
    decay_mask = functools.partial(jax.tree.map, lambda p: p.ndim >= 2)
    return optax.chain(optax.clip_by_global_norm(config.clip_norm),
                       optax.adamw(learning_rate(config), weight_decay=config.weight_decay, mask=decay_mask))


def data_mesh(devices: int | None = None, batch: int | None = None) -> Mesh:
    """A one-axis ("data") mesh over the first ``devices`` local devices (all of them by default).

    Raises:
      TrainError: more devices asked for than exist, or a batch that does not split evenly over them.
    """
    available = jax.local_devices()
    count = len(available) if devices is None else devices
    if not 1 <= count <= len(available):
        raise TrainError(f"devices must be in [1, {len(available)}] (local devices here), got {devices}")
    if batch is not None and batch % count:
        raise TrainError(f"batch {batch} does not split evenly over {count} devices")
    return Mesh(np.array(available[:count]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of values every device holds whole (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def initial_params(config: TrainConfig) -> nnx.State:
    """fp32 parameters of ``nnx.List([unet, text_encoder])``: drawn from the seed, or read from the snapshot
    ``config.init_from``, of any world version with this vocabulary (with ``fresh_text_encoder``, only its
    UNet; the text encoder is drawn from the seed, so that words the snapshot's encoder had merged start
    apart again).

    Raises:
      TrainError: the snapshot's parameters are not those of ``config.arch`` (the first mismatch is named).
    """
    if config.init_from is None:
        return nnx.state(toy_model.build_models(config.arch, dtype=jnp.float32, seed=config.seed), nnx.Param)

    try:
        components = toy_model.load_toy(config.init_from, dtype=jnp.float32, cache=False, any_world=True)
    except (toy_model.ToySnapshotError, ConversionError, OSError) as e:
        raise TrainError(f"--init-from {config.init_from}: {e}") from e
    params = nnx.state(nnx.List([components.unet, components.text_encoder]), nnx.Param)
    expected = dict(nnx.to_flat_state(nnx.state(toy_model.abstract_models(config.arch), nnx.Param)))
    found = dict(nnx.to_flat_state(params))
    for path in sorted(set(expected) | set(found), key=str):
        shape = lambda table: tuple(table[path].shape) if path in table else "missing"  # noqa: E731
        if shape(expected) != shape(found):
            raise TrainError(f"--init-from {config.init_from}: parameter {'.'.join(map(str, path))} is "
                             f"{shape(found)}, arch {config.arch!r} has {shape(expected)}")
    if config.fresh_text_encoder:
        seeded = toy_model.build_models(config.arch, dtype=jnp.float32, seed=config.seed)
        nnx.update(seeded[0], nnx.state(components.unet, nnx.Param))
        params = nnx.state(seeded, nnx.Param)
    return params


def init_state(config: TrainConfig, mesh: Mesh | None = None) -> TrainState:
    """The step-0 state: fp32 parameters (:func:`initial_params`), fresh optimizer state, EMA = parameters.

    Replicated over ``mesh`` (default: :func:`data_mesh` over all local devices), as restored checkpoints
    are, so both hit one compiled step.
    """
    params = initial_params(config)
    ema = jax.tree.map(lambda p: jnp.array(p, copy=True), params)  # its own buffers: the step donates both
    state = TrainState(jnp.zeros((), jnp.int32), params, optimizer(config).init(params), ema)
    return jax.device_put(state, replicated(mesh or data_mesh(batch=config.batch)))


def abstract_state(config: TrainConfig) -> TrainState:
    """Shapes and dtypes of :func:`init_state` (nothing initialised)."""
    params = nnx.state(toy_model.abstract_models(config.arch, dtype=jnp.float32), nnx.Param)
    return TrainState(jax.ShapeDtypeStruct((), jnp.int32), params, jax.eval_shape(optimizer(config).init, params),
                      params)


def ema_decay(config: TrainConfig, step: jax.Array) -> jax.Array:
    """The EMA decay after ``step`` updates: min(ema_decay, (1 + step) / (10 + step))."""
    step = step.astype(jnp.float32)
    return jnp.minimum(config.ema_decay, (1.0 + step) / (10.0 + step))


def loss_weights(config: TrainConfig, schedule, t: jax.Array) -> jax.Array:
    """float32 [B]: each sample's weight on its ε-MSE; 1 for "eps", 1/ᾱ_t for "v" (the v-prediction loss:
    |v̂ − v|² = |ε̂ − ε|²/ᾱ_t at a fixed x_t)."""
    if config.loss_weighting == "v":
        return 1.0 / schedule.alphas_cumprod[t].astype(jnp.float32)
    return jnp.ones(t.shape, jnp.float32)


@functools.lru_cache(maxsize=8)
def make_train_step(config: TrainConfig, mesh: Mesh):
    """``train_step(state, key) -> (state, loss)``: one jitted step over ``mesh``; ``state`` is donated.

    The batch is drawn inside the step and split over the mesh's "data" axis; the state stays replicated.
    ``key`` is the run's base key; the step's key is ``fold_in(key, state.step)``. Cached per (config,
    mesh), so runs of one process (a resume, tests) compile the step once.
    """
    compute = PRECISIONS[config.precision]
    graphdef = nnx.graphdef(toy_model.abstract_models(config.arch, dtype=compute))
    schedule = make_schedule(toy_model.scheduler_config(config.prediction, config.zero_terminal_snr), 1)
    num_train = schedule.alphas_cumprod.shape[0]
    tx = optimizer(config)

    def loss_fn(params, videos, ids, t, noise):
        unet, text_encoder = nnx.merge(graphdef, jax.tree.map(lambda p: p.astype(compute), params))
        noisy = add_noise(schedule, videos, noise, t)
        text = text_encoder.prompt_embeds(ids, backend=config.attention_backend)
        out, _ = unet(noisy, t, text, backend=config.attention_backend)
        target = training_target(config.prediction, schedule, videos, noise, t)
        per_sample = jnp.mean((out.astype(jnp.float32) - target) ** 2, axis=tuple(range(1, noise.ndim)))  # [B]
        return jnp.mean(loss_weights(config, schedule, t) * per_sample)

    whole = replicated(mesh)
    split = NamedSharding(mesh, PartitionSpec("data"))  # leading (batch) axis over the devices

    @functools.partial(jax.jit, donate_argnums=0, out_shardings=(whole, whole))
    def train_step(state: TrainState, key: jax.Array) -> tuple[TrainState, jax.Array]:
        k_data, k_time, k_noise = jax.random.split(jax.random.fold_in(key, state.step), 3)
        videos, ids = training_batch(k_data, config.batch, config.caption_dropout, config.two_object_fraction)
        t = jax.random.randint(k_time, (config.batch,), config.min_timestep, num_train)
        noise = training_noise(config.noise, k_noise, videos.shape)
        videos, ids, t, noise = jax.lax.with_sharding_constraint((videos, ids, t, noise), split)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, videos, ids, t, noise)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(config, state.step)
        ema = jax.tree.map(lambda e, p: e + (1.0 - decay) * (p - e), state.ema, params)
        return TrainState(state.step + 1, params, opt_state, ema), loss

    return train_step

# ------------------------------------------------------------------------------------------ run folder


def _read_run_config(out: Path, config: TrainConfig | None) -> TrainConfig:
    """The run's config: ``config`` written to a new folder, or the stored one (which must match, if given)."""
    file = out / RUN_CONFIG
    if not file.is_file():
        if config is None:
            raise TrainError(f"{out} has no {RUN_CONFIG}: it is not a training run folder")
        if out.is_dir() and any(out.iterdir()):
            raise TrainError(f"{out} is not empty and holds no {RUN_CONFIG}: it is not a training run folder; name a "
                             "new or empty folder (a run folder is resumed by rerunning)")
        out.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
        return config
    stored = TrainConfig(**read_json_object(file, TrainError))
    if config is not None and config != stored:
        changed = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(stored).items() if getattr(config, k) != v}
        raise TrainError(f"{out} holds a run with other settings (stored, given): {changed}; resume it with the "
                         "same settings or use another --out")
    return stored


def _manager(out: Path):
    import orbax.checkpoint as ocp  # deferred: orbax takes seconds to import

    return ocp.CheckpointManager((out / CHECKPOINTS).resolve(), options=ocp.CheckpointManagerOptions(max_to_keep=2))


def _save(manager, state: TrainState) -> None:
    import orbax.checkpoint as ocp  # deferred: orbax takes seconds to import

    manager.save(int(state.step), args=ocp.args.StandardSave(jax.tree.leaves(state)), force=True)
    manager.wait_until_finished()


def restore_state(out: str | os.PathLike, config: TrainConfig, mesh: Mesh | None = None) -> TrainState | None:
    """The latest checkpointed state of a run folder (replicated over ``mesh``, default the default
    device), or None when it has none."""
    import orbax.checkpoint as ocp  # deferred: orbax takes seconds to import

    with _manager(Path(out)) as manager:
        step = manager.latest_step()
        if step is None:
            return None
        # Restored straight onto the target devices (a checkpoint saved on 4 devices restores on 1).
        target = replicated(mesh) if mesh is not None else jax.sharding.SingleDeviceSharding(jax.devices()[0])
        leaves, treedef = jax.tree.flatten(abstract_state(config))
        leaves = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=target) for x in leaves]
        restored = manager.restore(step, args=ocp.args.StandardRestore(leaves))
    return jax.tree.unflatten(treedef, restored)


def _truncate_log(file: Path, step: int) -> None:
    """Drop log lines past ``step`` (left by a run that stopped between a log line and its checkpoint)."""
    if not file.is_file():
        return
    lines = [line for line in file.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    file.write_text("".join(line + "\n" for line in lines))

# ----------------------------------------------------------------------------------------------- train


def train(config: TrainConfig | None, out: str | os.PathLike, *, max_minutes: float | None = None,
          stop_after: int | None = None, progress: bool = True, devices: int | None = None) -> RunResult:
    """Train (or continue training) the run in ``out`` until ``config.steps``.

    Args:
      config: the run's settings; None to continue the run stored in ``out``.
      out: the run folder (created if needed).
      max_minutes: stop (with a checkpoint) once this much wall time has passed since the call.
      stop_after: stop (with a checkpoint) after this many steps of this call.
      progress: show a tqdm bar.
      devices: how many local devices share the batch (default: all).

    Raises:
      TrainError: ``out`` holds a run with other settings, or is not a run folder and ``config`` is None;
        ``devices`` out of range or not dividing the batch.
    """

    start = time.monotonic()
    out = Path(out)
    config = _read_run_config(out, config)
    mesh = data_mesh(devices, config.batch)
    state = restore_state(out, config, mesh) or init_state(config, mesh)
    first = int(state.step)
    _truncate_log(out / LOSS_LOG, first)
    train_step = make_train_step(config, mesh)
    key = jax.random.key(config.seed)
    lr = learning_rate(config)
    pending: list[jax.Array] = []
    last_loss, stopped = None, "done"
    with _manager(out) as manager, open(out / LOSS_LOG, "a") as log, \
            tqdm(total=config.steps, initial=first, desc="training", unit="step", disable=not progress) as bar:
        for step in range(first, config.steps):
            state, loss = train_step(state, key)
            pending.append(loss)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                last_loss = float(jnp.mean(jnp.stack(pending)))
                pending = []
                log.write(json.dumps({"step": done, "loss": last_loss, "lr": float(lr(step)),
                                      "time_s": round(time.monotonic() - start, 3),
                                      "devices": mesh.size}) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{last_loss:.4f}")
            bar.update(1)
            out_of_time = max_minutes is not None and time.monotonic() - start >= 60.0 * max_minutes
            out_of_steps = stop_after is not None and done - first >= stop_after
            if done % config.checkpoint_every == 0 or done == config.steps or out_of_time or out_of_steps:
                _save(manager, state)
            if done < config.steps and (out_of_time or out_of_steps):
                stopped = "max_minutes" if out_of_time else "stop_after"
                break
        else:
            if first == config.steps:
                stopped = "already done"
    plot_loss(out)
    return RunResult(out, int(state.step), last_loss, stopped)


def plot_loss(out: str | os.PathLike) -> Path | None:
    """Write ``loss.png`` (raw and smoothed loss against step, log scale) from ``loss.jsonl``; None without data.

    Needs matplotlib.
    """
    import matplotlib  # deferred: matplotlib takes about a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib takes about a second to import

    out = Path(out)
    file = out / LOSS_LOG
    records = [json.loads(line) for line in file.read_text().splitlines() if line] if file.is_file() else []
    if not records:
        return None
    steps = np.array([r["step"] for r in records])
    loss = np.array([r["loss"] for r in records])
    window = max(1, len(loss) // 20)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")  # [n - window + 1]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    axis.plot(steps, loss, alpha=0.35, label="loss (mean over log interval)")
    axis.plot(steps[window - 1:], smooth, label=f"moving average ({window})")
    axis.set(xlabel="step", ylabel="MSE of the prediction (ε or v)", yscale="log", title="toy model training loss")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / LOSS_PLOT)
    plt.close(figure)
    return out / LOSS_PLOT


def export(out: str | os.PathLike, to: str | os.PathLike, *, dtype=jnp.bfloat16) -> Path:
    """Write the latest checkpoint of run ``out`` as a toy-model snapshot folder ``to``: its EMA parameters,
    in ``dtype``."""
    out = Path(out)
    config = _read_run_config(out, None)
    state = restore_state(out, config)
    if state is None:
        raise TrainError(f"{out} has no checkpoint yet; train first")
    models = toy_model.abstract_models(config.arch, dtype=dtype)
    nnx.update(models, jax.tree.map(lambda p: p.astype(dtype), state.ema))
    unet, text_encoder = models
    info = {**dataclasses.asdict(config), "trained_steps": int(state.step),
            "final_loss": _last_loss(out), "parameters": toy_model.param_count(models)}
    return toy_model.save_toy(to, unet, text_encoder, info, dtype=dtype,
                              scheduler=toy_model.scheduler_config(config.prediction, config.zero_terminal_snr))


def _last_loss(out: Path) -> float | None:
    file = out / LOSS_LOG
    lines = [line for line in file.read_text().splitlines() if line] if file.is_file() else []
    return json.loads(lines[-1])["loss"] if lines else None
