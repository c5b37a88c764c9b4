"""Toy editing benchmark (issue 6, item 6): our counterpart of the paper's Tables 3 and 5 in the toy world.

    python benchmarks/toy_edit.py                      # shipped toy model -> benchmarks/results/
    python benchmarks/toy_edit.py --model RUN/model    # any toy snapshot
    python benchmarks/toy_edit.py --tiny --out /tmp/b  # CPU smoke test: random tiny model, 3 pairs

Edit pairs change one attribute of a single-object toy caption: its colour, its shape or its background
(a third each; sources are training combinations, and so are colour and shape targets; a background is
swapped for one of as many words, so every pair's prompts align token for token, as p2p needs). Two modes:

- **generated** (Algorithm 1): source and target from the same noise in one sampling run;
- **real**: the source caption's toy-world video is rendered, DDIM-inverted with the source prompt and
  edited, the source rows driven by the inversion trajectory (unclipped DDIM and ω = 3 by default, as
  ``python -m ieadapt_jax.edit --video`` does: see ``ieadapt_jax.edit.REAL_VIDEO_GUIDANCE``).

Every configuration runs the same pairs from the same noise: the methods of Table 3 (all, tokenflow, kv, v,
p2p, ieadapt at ρ = 0.5), ieadapt at ρ = 0.25, 0.5, 0.65, 0.75, 1.0 (Table 5), and "none" (the target
prompt generated from the same start with no injection: what the model does without an editing method).
Scores are weight-free (:mod:`ieadapt_jax.editing.toy_scores`): edit success (the target attribute is read
back from the edited video), kept (the other object attributes are unchanged), mask IoU and centroid error
against the source (structure and motion), background MAE outside the objects (background preservation,
colour and shape edits only). Writes toy_edit.json (every pair's scores), toy_edit.md (the tables) and
toy_edit_samples.gif into --out.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ieadapt_jax import video_io
from ieadapt_jax.edit import REAL_VIDEO_GUIDANCE
from ieadapt_jax.editing import (
    ddim_config,
    decode_latents,
    edit_batch,
    encode_text,
    generate_batch,
    inversion_config,
)
from ieadapt_jax.editing.toy_scores import score_edits
from ieadapt_jax.inversion import invert
from ieadapt_jax.loading import AnimateDiffComponents
from ieadapt_jax.schedulers import make_schedule
from ieadapt_jax.toy import world
from ieadapt_jax.toy.evaluate import default_dtype
from ieadapt_jax.toy.model import (
    SCHEDULER_CONFIG,
    PixelSpace,
    ToyTokenizer,
    build_models,
    load_toy,
    read_toy_info,
)

KINDS = ("colour", "shape", "background")
RATIOS = (0.25, 0.5, 0.65, 0.75, 1.0)
TABLE3 = (("none", None), ("all", None), ("tokenflow", None), ("kv", 0.5), ("v", 0.5), ("p2p", None),
          ("ieadapt", 0.5))
MODES = ("generated", "real")
SAMPLE_PAIRS = 6
READ_FIELDS = ("shape", "colour", "size", "motion", "background")


def edit_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (source, target) captions cycling through colour, shape and background edits."""
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < count:
        kind = KINDS[len(pairs) % len(KINDS)]
        shape, colour, motion = world.TRAIN_COMBINATIONS[rng.integers(len(world.TRAIN_COMBINATIONS))]
        size, background = rng.integers(len(world.SIZES)), rng.integers(len(world.BACKGROUNDS))
        new = dict(shape=shape, colour=colour, background=background)
        if kind == "colour":
            options = [c for c in range(len(world.COLOURS)) if c != colour and not world.is_heldout(shape, c, motion)]
            new["colour"] = rng.choice(options)
        elif kind == "shape":
            options = [s for s in range(len(world.SHAPES)) if s != shape and not world.is_heldout(s, colour, motion)]
            new["shape"] = rng.choice(options)
        else:
            words = len(world.BACKGROUNDS[background].split())  # same word count: prompts stay token-aligned (p2p)
            new["background"] = rng.choice([b for b, name in enumerate(world.BACKGROUNDS)
                                            if b != background and len(name.split()) == words])
        source = world.caption(world.one_object(int(shape), int(colour), int(size), int(motion), int(background)))
        target = world.caption(world.one_object(int(new["shape"]), int(new["colour"]), int(size), int(motion),
                                                int(new["background"])))
        pairs.append((source, target))
    return pairs


def configs() -> list[tuple[str, float | None]]:
    """(method, ρ) of every configuration, Table 3's first, then Table 5's ρ sweep (ieadapt at 0.5 once)."""
    rows = list(TABLE3)
    rows += [("ieadapt", r) for r in RATIOS if r != 0.5]
    return rows


def _videos(components, latents: np.ndarray) -> np.ndarray:
    """uint8 [P, F, H, W, 3] of latents [P, F, h, w, C]."""
    return np.stack([decode_latents(components.vae, z) for z in latents])


def run_mode(components, pairs, mode: str, *, steps: int, guidance_scale: float, batch: int, seed: int,
             progress: bool) -> dict:
    """Every configuration on every pair in one mode: {"configs": [...], "sources_read_ok": ..., "samples": ...}."""
    config = ddim_config(components.scheduler_config) if mode == "generated" else inversion_config(components.scheduler_config)
    schedule = make_schedule(config, steps)
    shape = (world.FRAMES, world.HEIGHT, world.WIDTH, components.unet.config.in_channels)
    scores: dict[str, list] = {}
    site_counts: dict[str, list] = {}
    seconds: dict[str, float] = {}
    source_ok: list[tuple[bool, ...]] = []
    samples: dict[str, np.ndarray] = {}
    for start in range(0, len(pairs), batch):
        chunk = pairs[start:start + batch]
        sources, targets = [p[0] for p in chunk], [p[1] for p in chunk]
        keys = [jax.random.fold_in(jax.random.PRNGKey(seed), i) for i in range(start, start + len(chunk))]
        inversion = None
        if mode == "generated":
            x_t = jnp.stack([jax.random.normal(k, shape) for k in keys]) * schedule.init_noise_sigma
        else:
            frames = jnp.stack([world.render(world.parse(s), k) for s, k in zip(sources, keys)])  # [P, F, H, W, 3]
            _, src_text = encode_text(components, sources)
            inversion = invert(components.unet, schedule, frames * 2 - 1, src_text, progress=progress)
            x_t = inversion.noise
        edited, source_latents = {}, None
        for method, ratio in configs():
            name = config_name(method, ratio)
            tick = time.perf_counter()
            if method == "none":
                uncond, tgt_text = encode_text(components, targets)
                latents, _ = generate_batch(components.unet, schedule, x_t, uncond, tgt_text, guidance_scale,
                                            progress=progress)
                counts = [0] * len(chunk)
            else:
                out = edit_batch(components, sources, targets, x_t, schedule, method=method,
                                 ratio=0.5 if ratio is None else ratio, guidance_scale=guidance_scale,
                                 inversion=inversion, all_sites_active=True, progress=progress)
                latents, source_latents, counts = out.edited_latents, out.source_latents, [len(s) for s in out.sites]
            edited[name] = _videos(components, np.asarray(latents))
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - tick
            site_counts.setdefault(name, []).extend(counts)
        source_videos = _videos(components, np.asarray(source_latents))
        for name, videos in edited.items():
            scores.setdefault(name, []).extend(score_edits(source_videos, videos, sources, targets))
        read = score_edits(source_videos, source_videos, sources, sources)
        source_ok += [tuple(r["source_read"][f] == a for f, a in zip(READ_FIELDS, _caption_attributes(s)))
                      for r, s in zip(read, sources)]
        if start == 0:
            samples = {"source": source_videos[:SAMPLE_PAIRS], **{n: v[:SAMPLE_PAIRS] for n, v in edited.items()}}
    table = [dict(config=name, **aggregate(scores[name]), sites_mean=float(np.mean(site_counts[name])),
                  seconds=round(seconds[name], 2), pairs=scores[name]) for name in scores]
    read_ok = dict(zip(READ_FIELDS, np.mean(np.asarray(source_ok, float), axis=0).tolist()))
    return dict(configs=table, sources_read_ok=read_ok, samples=samples)


def _caption_attributes(caption: str) -> tuple[str, ...]:
    """(shape, colour, size, motion, background) names of a single-object caption."""
    a = world.parse(caption)
    return (world.SHAPES[int(a.shape[0])], world.COLOURS[int(a.colour[0])], world.SIZES[int(a.size[0])],
            world.MOTIONS[int(a.motion[0])], world.BACKGROUNDS[int(a.background)])


def config_name(method: str, ratio: float | None) -> str:
    return method if ratio is None or method in ("kv", "v") else f"{method} ρ={ratio:g}"


def aggregate(scores: list[dict]) -> dict:
    """Rates and means over pairs (module docstring); background MAE in grey levels (0-255) over colour and
    shape edits."""
    def mean(values):
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.mean(values)) if values else None

    by_kind = {k: mean([float(s["success"]) for s in scores if s["kind"] == k]) for k in KINDS}
    return dict(
        n=len(scores), success=mean([float(s["success"]) for s in scores]), success_by_kind=by_kind,
        kept=mean([float(s["kept"]) for s in scores]),
        success_and_kept=mean([float(s["success"] and s["kept"]) for s in scores]),
        mask_iou=mean([s["mask_iou"] for s in scores]), centroid_error=mean([s["centroid_error"] for s in scores]),
        centroid_error_median=float(np.nanmedian([s["centroid_error"] for s in scores])),
        background_mae=mean([255.0 * s["background_mae"] for s in scores if s["kind"] != "background"]),
        flicker=mean([255.0 * s["flicker"] for s in scores]),
    )


def markdown(report: dict) -> str:
    """The benchmark's tables (Table 3 and Table 5 counterparts, one pair of tables per mode)."""
    def fmt(x, digits=3):
        return "–" if x is None else f"{x:.{digits}f}"

    head = ("| config | sites | success | colour | shape | background | kept | success ∧ kept | mask IoU | "
            "centroid err (px) | bg MAE (0-255) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [f"# Toy editing benchmark\n\n{report['device']}, {report['date']}; model `{report['model']}`; "
             f"{report['pairs']} pairs, {report['steps']} DDIM steps, ω = {report['guidance_scale']} (generated) and "
             f"{report['real_guidance_scale']} (real); command "
             f"`{report['command']}`.\n"]
    for mode, result in report["modes"].items():
        rows = {c["config"]: c for c in result["configs"]}
        read = ", ".join(f"{k} {v:.2f}" for k, v in result["sources_read_ok"].items())
        lines.append(f"## {mode} videos\n\nSource videos showing their caption's attribute: {read}.\n")
        for title, names in (("Methods (paper Table 3)", [config_name(m, r) for m, r in TABLE3]),
                             ("Entropy ratio ρ of ieadapt (paper Table 5)", [config_name("ieadapt", r) for r in RATIOS])):
            lines += [f"### {title}\n", head]
            for name in names:
                c = rows[name]
                kinds = c["success_by_kind"]
                lines.append(f"| {name} | {c['sites_mean']:.1f} | {fmt(c['success'], 2)} | {fmt(kinds['colour'], 2)} | "
                             f"{fmt(kinds['shape'], 2)} | {fmt(kinds['background'], 2)} | {fmt(c['kept'], 2)} | "
                             f"{fmt(c['success_and_kept'], 2)} | {fmt(c['mask_iou'])} | {fmt(c['centroid_error'], 2)} | "
                             f"{fmt(c['background_mae'], 1)} |")
            lines.append("")
    return "\n".join(lines)


def write_samples(path: Path, result: dict) -> None:
    """A gif: per sample pair, the source and the edits of none, all and ieadapt ρ=0.5, enlarged 4x."""
    samples = result["samples"]
    names = ["source", "none", "all", "ieadapt ρ=0.5"]
    rows = []
    for p in range(len(samples["source"])):
        clips = [samples[n][p].repeat(4, axis=1).repeat(4, axis=2) for n in names]
        rows.append(video_io.side_by_side(clips, [n.replace("ρ", "rho") for n in names]))
    video_io.write_video(path, np.concatenate(rows, axis=1), fps=8)


def _finite(value):
    """``value`` with non-finite floats written as their names (JSON has no infinity)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _tiny_components() -> AnimateDiffComponents:
    unet, text_encoder = build_models("tiny")
    return AnimateDiffComponents(unet, PixelSpace(), text_encoder, ToyTokenizer(), dict(SCHEDULER_CONFIG), "tiny random")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="toy snapshot folder (default: the shipped toy model)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--pairs", type=int, default=60, help="edit pairs (a third per kind)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="ω of generated edits (default: the snapshot's default_guidance_scale)")
    parser.add_argument("--real-guidance-scale", type=float, default=REAL_VIDEO_GUIDANCE,
                        help="ω of real-video edits (inverted noise needs more guidance to move)")
    parser.add_argument("--batch", type=int, default=60, help="pairs per sampling run (4 rows each)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: random tiny model, 3 pairs, 2 steps")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.pairs, args.steps, args.batch = 3, 2, 3
        components = _tiny_components()
    elif args.model is not None:
        components = load_toy(args.model, default_dtype())
    else:
        from ieadapt_jax.toy import load_default

        components = load_default(default_dtype())
    if args.guidance_scale is None:
        args.guidance_scale = float(read_toy_info(components.path)["default_guidance_scale"]) if not args.tiny else 1.5
    pairs = edit_pairs(args.pairs, args.seed)
    start = time.perf_counter()
    scales = {"generated": args.guidance_scale, "real": args.real_guidance_scale}
    modes = {mode: run_mode(components, pairs, mode, steps=args.steps, guidance_scale=scales[mode],
                            batch=args.batch, seed=args.seed, progress=not args.quiet) for mode in args.modes}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = dict(
        model=components.path, device=jax.devices()[0].device_kind, date=datetime.date.today().isoformat(),
        command="python benchmarks/toy_edit.py " + " ".join(sys.argv[1:] if argv is None else argv),
        pairs=len(pairs), steps=args.steps, guidance_scale=args.guidance_scale,
        real_guidance_scale=args.real_guidance_scale, seed=args.seed,
        seconds=round(time.perf_counter() - start, 1),
        modes={mode: {k: v for k, v in result.items() if k != "samples"} for mode, result in modes.items()},
    )
    (out / "toy_edit.json").write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")
    (out / "toy_edit.md").write_text(markdown(report))
    write_samples(out / "toy_edit_samples.gif", modes[args.modes[0]])
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
