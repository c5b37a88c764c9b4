"""Evaluating a toy model: generate videos of held-out captions with our sampler, read them with the toy metrics.

    report = evaluate("runs/toy/model", "runs/toy/eval", num=200)
    report["accuracy"]      # {"colour": ..., "shape": ..., "motion": ..., "size": ...}

Captions come from :func:`world.heldout_attributes` (single objects whose (shape, colour, motion) triple
was never trained on). Videos are generated in batches through :func:`ieadapt_jax.sample` (DDIM from the
snapshot's scheduler config, classifier-free guidance: rows [empty caption, caption] per video, combined
by W = [(1 - ω) I, ω I]), each from its own noise ``fold_in(seed, index)`` so a video does not depend on
the batch size. :func:`metrics.classify` reads shape, colour, size and motion back from the pixels.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import video_io
from ..core.jit import jit_method
from ..core.protocols import Components
from ..sampling import make_plan, sample
from ..schedulers import make_schedule
from . import metrics, world
from .model import load_toy, read_toy_info

EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.gif"
BARS = {"colour": 0.90, "shape": 0.80, "motion": 0.80}
_GRID_COLUMNS, _GRID_ROWS, _GRID_ZOOM = 4, 4, 4


def default_dtype():
    """bfloat16 on accelerators, float32 on CPU (where bf16 matmuls are slow)."""
    return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16


@jit_method
def _text_states(text_encoder, ids):
    return text_encoder.prompt_embeds(ids)  # [N, L, D]


def text_states(components: Components, captions: Sequence[str]) -> jax.Array:
    """[N, L, D] text states of captions (through the components' tokenizer and text encoder)."""
    ids = components.tokenizer(list(captions), padding="max_length", return_tensors="np").input_ids  # [N, L]
    return _text_states(components.text_encoder, jnp.asarray(ids))


def generate(components: Components, captions: Sequence[str], *, num_inference_steps: int = 25,
             guidance_scale: float = 5.0, seed: int = 0, batch: int = 50, backend: str = "auto",
             progress: bool = True) -> np.ndarray:
    """uint8 [N, F, H, W, 3] videos of captions from a pixel-space toy model, ``batch`` videos per sampling run.

    The last batch is padded with repeats (dropped after), so every run has one shape and compiles once.
    """
    if not captions:
        raise ValueError("generate needs at least one caption")
    unet = components.unet
    schedule = make_schedule(components.scheduler_config, num_inference_steps)
    cond = text_states(components, captions)  # [N, L, D]
    uncond = text_states(components, [""])  # [1, L, D]
    n = min(batch, len(captions))
    plan = make_plan(unet, list(range(n)) * 2, backend=backend, progress=progress)
    eye = np.eye(n, dtype=np.float32)
    weights = np.concatenate([(1.0 - guidance_scale) * eye, guidance_scale * eye], axis=1)  # [n, 2n]
    shape = (world.FRAMES, world.HEIGHT, world.WIDTH, unet.config.in_channels)
    key = jax.random.PRNGKey(seed)
    videos = []
    for start in range(0, len(captions), n):
        index = np.minimum(np.arange(start, start + n), len(captions) - 1)  # [n], padded with the last caption
        noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape))(jnp.asarray(index))
        row_text = jnp.concatenate([jnp.broadcast_to(uncond, (n,) + uncond.shape[1:]), cond[index]])  # [2n, L, D]
        out = sample(unet, plan, schedule, noise * schedule.init_noise_sigma, row_text, weights)
        frames = np.asarray(out.latents)[: len(captions) - start]  # [n', F, H, W, 3] in [-1, 1]
        videos.append(np.round(np.clip(frames / 2 + 0.5, 0.0, 1.0) * 255).astype(np.uint8))
    return np.concatenate(videos)


def _short_label(attrs: world.Attributes, i: int) -> str:
    return f"{world.COLOURS[attrs.colour[i, 0]]} {world.SHAPES[attrs.shape[i, 0]]} {world.MOTIONS[attrs.motion[i, 0]]}"


def write_grid(path: Path, videos: np.ndarray, labels: Sequence[str]) -> Path:
    """A gif of up to 4 x 4 videos (each enlarged 4x, nearest neighbour) with their labels."""
    count = min(len(videos), _GRID_COLUMNS * _GRID_ROWS)
    zoomed = videos[:count].repeat(_GRID_ZOOM, axis=2).repeat(_GRID_ZOOM, axis=3)  # [n, F, 4H, 4W, 3]
    rows = []
    for start in range(0, count, _GRID_COLUMNS):
        clips = list(zoomed[start:start + _GRID_COLUMNS])
        names = list(labels[start:start + _GRID_COLUMNS])
        while len(clips) < _GRID_COLUMNS:
            clips.append(np.full_like(zoomed[0], 255))
            names.append("")
        rows.append(video_io.side_by_side(clips, names))
    return video_io.write_video(path, np.concatenate(rows, axis=1), fps=8)  # rows stacked: [F, sum H, W, 3]


def evaluate(model: str | os.PathLike, out: str | os.PathLike, *, num: int = 200, num_inference_steps: int = 25,
             guidance_scale: float | None = None, seed: int = 0, batch: int = 50, dtype=None,
             backend: str = "auto", progress: bool = True) -> dict:
    """Generate ``num`` held-out videos with the snapshot ``model``, classify them, write ``eval.json`` and
    ``samples.gif`` into ``out``, and return the report (accuracies per attribute, the bars, per-video rows).

    ``guidance_scale`` defaults to the snapshot's ``default_guidance_scale``; ``dtype`` to :func:`default_dtype`;
    ``backend`` is the attention backend of the sampling forward.
    """
    start = time.perf_counter()
    info = read_toy_info(model)
    scale = float(info["default_guidance_scale"] if guidance_scale is None else guidance_scale)
    components = load_toy(model, dtype or default_dtype())
    attrs = jax.tree.map(np.asarray, world.heldout_attributes(jax.random.key(seed), num))
    captions = world.caption(attrs)
    videos = generate(components, captions, num_inference_steps=num_inference_steps, guidance_scale=scale,
                      seed=seed, batch=batch, backend=backend, progress=progress)
    predicted = jax.tree.map(np.asarray, metrics.classify(videos))
    accuracy = {name: float(np.mean((getattr(predicted, field) == getattr(attrs, field)[:, 0]) & predicted.present))
                for name, field in (("colour", "colour"), ("shape", "shape"), ("motion", "motion"), ("size", "size"))}
    report = {
        "model": str(model), "world_version": world.WORLD_VERSION, "num": num, "seed": seed,
        "num_inference_steps": num_inference_steps, "guidance_scale": scale, "scheduler": "DDIMScheduler",
        "accuracy": accuracy, "bars": BARS,
        "passed": {name: accuracy[name] >= bar for name, bar in BARS.items()},
        "trained_steps": info.get("training", {}).get("trained_steps"),
        "seconds": round(time.perf_counter() - start, 2), "device": jax.devices()[0].device_kind,
        "videos": [{"caption": captions[i],
                    "predicted": ({f: world_names(f, int(getattr(predicted, f)[i])) for f in ("colour", "shape", "size", "motion")}
                                  if predicted.present[i] else None)}
                   for i in range(num)],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / EVAL_FILE).write_text(json.dumps(report, indent=2) + "\n")
    write_grid(out / SAMPLES_FILE, videos, [_short_label(attrs, i) for i in range(num)])
    return report


def world_names(field: str, index: int) -> str:
    """The name of attribute ``field`` ("colour", "shape", "size", "motion") with index ``index``."""
    tables = {"colour": world.COLOURS, "shape": world.SHAPES, "size": world.SIZES, "motion": world.MOTIONS}
    return tables[field][index]
