"""``python -m ieadapt_jax.edit``: entropy-guided video editing (paper §4.2) from the command line.

    python -m ieadapt_jax.edit                                   # toy model: a red circle becomes a blue one
    python -m ieadapt_jax.edit --source "a large red square moving up on a black background" \\
        --target "a large red triangle moving up on a black background" --method all --out shape-edit
    python -m ieadapt_jax.edit --model animatediff --pretrained ~/models/animatediff \\
        --video dog.mp4 --source "a dog running on the grass" --target "a cat running on the grass"
    python -m ieadapt_jax.edit --model cogvideox --pretrained ~/models/cogvideox-2b \\
        --video dog.mp4 --frames 49 --source "a dog running on the grass" --target "a cat running on the grass"

Writes into ``--out``: source.mp4, edited.mp4 (the model's resolution), side_by_side.gif (the input, the
source and the edit, enlarged to at least 128 px), entropy.png (the source's entropy per self-attention
site, the injected sites marked) and report.json (settings, chosen sites with their entropies, metrics,
timings). Everything is written to a temporary folder next to ``--out`` and renamed at the end, so a
failed run leaves ``--out`` as it was. Exit codes: 0 done, 2 a mistake in the arguments or inputs
(the message says which).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

import jax.numpy as jnp

from . import video_io
from .convert import ConversionError
from .core.attention import BACKENDS
from .core.rewiring import RewiringError
from .core.sites import SiteError
from .editing import EditError, edit
from .editing.presets import DEFAULT_RATIO, METHODS
from .editing.toy_scores import score_edit
from .guidance import GuidanceError
from .inversion import InversionError
from .loading import load_animatediff, load_cogvideox
from .pipeline import PipelineError
from .sampling import SamplingError
from .schedulers import SchedulerError
from .scoring import MetricError, compute_metrics, load_metric_weights
from .toy import load_default
from .toy.model import ToySnapshotError, load_toy, read_toy_info
from .toy.world import VocabularyError
from .video_io import VideoError

TOY_SOURCE = "a large red circle moving right on a white background"
TOY_TARGET = "a large blue circle moving right on a white background"
DEFAULT_STEPS = 25
ANIMATEDIFF_GUIDANCE = 7.5
COGVIDEOX_GUIDANCE = 6.0  # diffusers' CogVideoXPipeline default
SNAPSHOT_MODELS = {"animatediff": "a local diffusers AnimateDiff or SD1.5 snapshot",
                   "cogvideox": "a local diffusers CogVideoX snapshot"}
# (frames, height, width) when not given: the toy world's, AnimateDiff's (SD1.5) and CogVideoX's (49 = 4·12 + 1).
DEFAULT_SIZES = {"toy": (16, 32, 32), "animatediff": (16, 512, 512), "cogvideox": (49, 480, 720)}
# DDIM-inverted real toy videos need more CFG to be edited: benchmarks/README.md#real-video-guidance-of-the-toy-model
REAL_VIDEO_GUIDANCE = 3.0
REPORT = "report.json"
MARKER = ".ieadapt-edit.json"  # lists the files an edit wrote; only such a folder is ever replaced
OUTPUTS = ("source.mp4", "edited.mp4", "side_by_side.gif", "entropy.png", REPORT, MARKER)
GIF_MIN_HEIGHT = 128


class UsageError(ValueError):
    """A command-line mistake found before any model runs."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ieadapt_jax.edit", description="Entropy-guided video editing (IE-Adapt, paper §4.2) and its baselines.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="methods:\n" + "\n".join(f"  {k:10s} {m.summary}" for k, m in METHODS.items()))
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=("toy", "animatediff", "cogvideox"), default="toy",
                       help="toy: the shipped toy model (or a toy snapshot given by --pretrained); animatediff: a "
                            "local diffusers AnimateDiff / SD1.5 snapshot (--pretrained); cogvideox: a local "
                            "diffusers CogVideoX (2B or 5B) snapshot (--pretrained), edited at its joint attention sites")
    model.add_argument("--pretrained", default=None, help="snapshot folder (required for --model animatediff and cogvideox)")
    model.add_argument("--motion-adapter", default=None,
                       help="MotionAdapter folder or mm_sd_v15 .ckpt/.safetensors for an SD1.5 snapshot")
    model.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                       help="parameter and compute dtype (bfloat16 on a GPU)")
    model.add_argument("--backend", choices=BACKENDS, default="auto", help="attention backend")

    edit = parser.add_argument_group("edit")
    edit.add_argument("--source", default=None, help=f"source prompt (toy default: {TOY_SOURCE!r})")
    edit.add_argument("--target", default=None, help=f"target prompt (toy default: {TOY_TARGET!r})")
    edit.add_argument("--video", default=None,
                      help="a real video to edit (mp4, gif, image or frame folder): VAE-encoded and DDIM-inverted "
                           "with the source prompt; without it the source is generated (Algorithm 1)")
    edit.add_argument("--method", choices=tuple(METHODS), default="ieadapt",
                      help="editing method (see below; tokenflow and p2p need a UNet's decoder and cross-attention: not cogvideox)")
    edit.add_argument("--ratio", type=float, default=DEFAULT_RATIO,
                      help="ρ in (0, 1]: fraction of self-attention sites (lowest entropy first) that take the "
                           "source's maps (ieadapt, kv, v)")
    edit.add_argument("--sites", nargs="+", default=None, metavar="SITE",
                      help="inject at these sites (names as in report.json) instead of the method's choice")
    edit.add_argument("--window", type=_window, default=None, metavar="START:STOP",
                      help="inject only at denoising steps START <= i < STOP, 0-based (default: every step)")
    edit.add_argument("--profile", choices=("first", "run"), default="first",
                      help="entropy of the source at the first step, or averaged over its whole run")
    edit.add_argument("--steps", type=int, default=None, help=f"DDIM steps (default {DEFAULT_STEPS})")
    edit.add_argument("--guidance-scale", type=float, default=None,
                      help=f"classifier-free guidance ω (default: the toy snapshot's, {REAL_VIDEO_GUIDANCE} for a real video "
                           f"with the toy model, {ANIMATEDIFF_GUIDANCE} for AnimateDiff, {COGVIDEOX_GUIDANCE} for CogVideoX)")
    edit.add_argument("--dynamic-cfg", action="store_true",
                      help="CogVideoX's dynamic CFG: ω rises over the steps (diffusers' use_dynamic_cfg; needs ω > 1)")
    edit.add_argument("--negative-prompt", default="", help="text of the unconditional rows")
    edit.add_argument("--seed", type=int, default=0, help="seed of the noise (generated videos) and masks")

    mask = parser.add_argument_group("background preservation")
    mask.add_argument("--mask", default=None,
                      help="image or video marking the region to edit in white; the rest is kept from the source")
    mask.add_argument("--mask-words", default=None,
                      help="source-prompt words whose influence marks the region to edit (LocalBlend-style)")
    mask.add_argument("--no-drive-source", action="store_true",
                      help="real videos: let the source rows run free from the inverted noise instead of following "
                           "the inversion trajectory (then the report's PSNR measures the DDIM reconstruction)")

    size = parser.add_argument_group("size")
    size.add_argument("--frames", type=int, default=None,
                      help="frames to generate or to read from --video (default: 16; 49 for cogvideox, whose VAE "
                           "needs 4k + 1 frames of a real video)")
    size.add_argument("--height", type=int, default=None, help="default: 32 (toy), 512 (animatediff), 480 (cogvideox)")
    size.add_argument("--width", type=int, default=None, help="default: 32 (toy), 512 (animatediff), 720 (cogvideox)")
    size.add_argument("--frame-stride", type=int, default=1, help="read every n-th frame of --video")

    output = parser.add_argument_group("output")
    output.add_argument("--out", default="edit_output",
                        help="output folder (default: edit_output); an existing one is replaced only when it holds "
                             "an earlier edit's output and nothing else")
    output.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it holds files an earlier edit did not write (they are deleted)")
    output.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos")
    output.add_argument("--metrics-weights", default=None, metavar="DIR",
                        help="folder of metric weights (layout: python -m ieadapt_jax.scoring --help): adds CLIP score, "
                             "CLIP directional similarity, aesthetic score, subject consistency and LPIPS to report.json")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 done, 2 a user mistake, reported on stderr)."""
    parser = _parser()
    args = parser.parse_args(argv)

    try:
        _check_args(args)
        out = Path(args.out)
        _check_out(out, overwrite=args.overwrite)
        components, defaults = _load(args)
        settings = _settings(args, defaults)
        report = _run(args, components, settings, out)
    except (UsageError, EditError) + _library_errors() as e:
        print(f"python -m ieadapt_jax.edit: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(_summary(report))
    return 0


def _library_errors() -> tuple[type[Exception], ...]:
    """The error classes of the library that mean "bad input", never "bug"."""

    return (ConversionError, GuidanceError, InversionError, MetricError, PipelineError, RewiringError,
            SamplingError, SchedulerError, SiteError, ToySnapshotError, VocabularyError, VideoError)


def _check_args(args) -> None:
    if args.model in SNAPSHOT_MODELS and args.pretrained is None:
        raise UsageError(f"--model {args.model} needs --pretrained DIR ({SNAPSHOT_MODELS[args.model]})")
    if args.model in SNAPSHOT_MODELS and (args.source is None or args.target is None):
        raise UsageError(f"--model {args.model} needs --source and --target prompts")
    if args.motion_adapter is not None and args.model != "animatediff":
        raise UsageError("--motion-adapter goes with --model animatediff")
    if not 0.0 < args.ratio <= 1.0:
        raise UsageError(f"--ratio must be in (0, 1], got {args.ratio}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.guidance_scale is not None and not math.isfinite(args.guidance_scale):
        raise UsageError(f"--guidance-scale must be a finite number, got {args.guidance_scale}")
    if args.window is not None and not 0 <= args.window[0] < args.window[1]:
        raise UsageError(f"--window START:STOP needs 0 <= START < STOP, got {args.window[0]}:{args.window[1]}")
    if args.mask is not None and args.mask_words is not None:
        raise UsageError("give --mask or --mask-words, not both")
    if args.mask_words is not None and not args.mask_words.split():
        raise UsageError("--mask-words needs at least one word of the source prompt")
    frames = _frames(args)
    if frames < 1 or args.frame_stride < 1:
        raise UsageError(f"--frames and --frame-stride must be at least 1, got {frames} and {args.frame_stride}")
    if args.model == "cogvideox" and args.video is not None and (frames - 1) % 4:
        raise UsageError(f"--model cogvideox reads 4k + 1 frames of --video (its VAE keeps frame 1, then packs 4 frames "
                         f"into each latent frame); got --frames {frames}: use {(frames - 1) // 4 * 4 + 1}")
    if not (math.isfinite(args.fps) and args.fps > 0):
        raise UsageError(f"--fps must be a positive number, got {args.fps}")
    for name in ("video", "mask", "pretrained", "motion_adapter", "metrics_weights"):
        path = getattr(args, name)
        if path is not None and not Path(path).expanduser().exists():
            raise UsageError(f"--{name.replace('_', '-')} {path}: no such file or folder")


def _window(text: str) -> tuple[int, int]:
    """argparse type of ``--window START:STOP``."""
    start, colon, stop = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return int(start), int(stop)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP (two integers), got {text!r}") from None


def _frames(args) -> int:
    """--frames, or the model's default."""
    return args.frames if args.frames is not None else DEFAULT_SIZES[args.model][0]


def _check_out(out: Path, *, overwrite: bool = False) -> None:
    """``out`` must be a missing or empty folder, or an earlier edit's output: a folder whose marker file
    (:data:`MARKER`, written by this command) lists every file in it. Anything else is refused before computing,
    so a folder holding files this command did not write is never replaced, unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a folder")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        foreign = _not_written_by_edit(out)
        if foreign:
            raise UsageError(f"--out {out} holds files that are not an earlier edit's output ({', '.join(foreign[:3])}"
                             f"{', ...' if len(foreign) > 3 else ''}); it is left alone: name a new or empty folder, "
                             "or add --overwrite to replace it")
    if not out.resolve().parent.is_dir():
        raise UsageError(f"--out {out}: its parent folder {out.resolve().parent} does not exist")


def _not_written_by_edit(out: Path) -> list[str]:
    """The paths in ``out`` (relative, sorted) that its marker does not list; every path when there is no marker."""
    found = sorted(str(path.relative_to(out)) for path in out.rglob("*") if not path.is_dir())
    try:
        listed = set(json.loads((out / MARKER).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return found
    return [name for name in found if name not in listed and name != MARKER]


def _dtype(name: str):

    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


def _load(args):
    """(components, model defaults) of the chosen model."""

    _, height, width = DEFAULT_SIZES[args.model]
    if args.model == "toy":
        if args.pretrained is None:
            components = load_default(_dtype(args.dtype))
        else:
            components = load_toy(Path(args.pretrained).expanduser(), _dtype(args.dtype))
        scale = REAL_VIDEO_GUIDANCE if args.video is not None else read_toy_info(components.path)["default_guidance_scale"]
        return components, dict(source=TOY_SOURCE, target=TOY_TARGET, guidance_scale=scale, height=height, width=width)
    if args.model == "cogvideox":
        components = load_cogvideox(Path(args.pretrained).expanduser(), _dtype(args.dtype))
        return components, dict(source=None, target=None, guidance_scale=COGVIDEOX_GUIDANCE, height=height, width=width)
    components = load_animatediff(Path(args.pretrained).expanduser(),
                                  None if args.motion_adapter is None else Path(args.motion_adapter).expanduser(),
                                  _dtype(args.dtype))
    return components, dict(source=None, target=None, guidance_scale=ANIMATEDIFF_GUIDANCE, height=height, width=width)


def _settings(args, defaults: dict) -> dict:
    return dict(
        source=args.source if args.source is not None else defaults["source"],
        target=args.target if args.target is not None else defaults["target"],
        guidance_scale=args.guidance_scale if args.guidance_scale is not None else defaults["guidance_scale"],
        height=args.height if args.height is not None else defaults["height"],
        width=args.width if args.width is not None else defaults["width"],
        steps=args.steps if args.steps is not None else DEFAULT_STEPS,
    )


def _run(args, components, settings: dict, out: Path) -> dict:
    """Edit, then write every output into a temporary folder that replaces ``out`` at the end."""

    start = time.perf_counter()
    tmp = out.resolve().parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    try:  # created before computing, so an unwritable --out fails at once
        tmp.mkdir()
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write beside it ({e.strerror or e})") from e
    try:
        return _edit_into(args, components, settings, tmp, out, start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _edit_into(args, components, settings: dict, tmp: Path, out: Path, start: float) -> dict:
    """Read the inputs, edit, write every output into ``tmp`` and move it to ``out``."""
    video = mask = None
    if args.video is not None:
        video = video_io.read_video(Path(args.video).expanduser(), num_frames=_frames(args),
                                    size=(settings["height"], settings["width"]), frame_stride=args.frame_stride)
    frames = _frames(args) if video is None else video.shape[0]
    if args.mask is not None:
        mask = video_io.read_mask(Path(args.mask).expanduser(), num_frames=frames,
                                  size=(settings["height"], settings["width"]), frame_stride=args.frame_stride)
    window = None if args.window is None else tuple(args.window)
    result = edit(
        components, settings["source"], settings["target"], video=video, method=args.method, ratio=args.ratio,
        sites=args.sites, window=window, profile=args.profile, num_frames=frames, height=settings["height"],
        width=settings["width"], num_inference_steps=settings["steps"], guidance_scale=settings["guidance_scale"],
        use_dynamic_cfg=args.dynamic_cfg,
        negative_prompt=args.negative_prompt, seed=args.seed, mask=mask, mask_words=args.mask_words,
        drive_source=not args.no_drive_source, backend=args.backend, progress=not args.quiet,
    )
    report = _report(args, components, result)
    _write_outputs(tmp, args, components.denoiser.site_table, result, report, start)
    _replace(tmp, out)
    return report


def _report(args, components, result) -> dict:
    table = components.denoiser.site_table
    entropy = [None if math.isnan(e) else round(float(e), 6) for e in result.entropy]
    metrics = dict(result.metrics)
    if args.model == "toy":

        try:
            metrics["toy"] = score_edit(result.source_video, result.edited_video, result.config["source"],
                                        result.config["target"])
        except (ValueError, VocabularyError) as e:
            metrics["toy"] = f"not scored: {e}"
    if args.metrics_weights is not None:
        metrics.update(_weighted_metrics(Path(args.metrics_weights).expanduser(), result))
    return {
        "model": {"kind": args.model, "path": components.path, "dtype": args.dtype},
        "config": {**result.config, "window": list(result.config["window"]) if result.config["window"] else None,
                   "video": args.video, "mask_file": args.mask},
        "chosen_sites": [{"name": table[s].name, "kind": table[s].kind, "entropy": entropy[s]}
                         for s in result.site_positions],
        "entropy": [{"name": site.name, "kind": site.kind, "entropy": entropy[i]} for i, site in enumerate(table)
                    if entropy[i] is not None],
        "metrics": metrics,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "outputs": list(OUTPUTS),
    }


def _weighted_metrics(folder: Path, result) -> dict:
    """The weight-based metrics (:mod:`ieadapt_jax.scoring`) of the edit: the edited video against the target
    prompt and the source video / prompt; the ones the folder's weights do not allow are listed as skipped."""

    scores = compute_metrics(load_metric_weights(folder), videos=result.edited_video[None],
                             references=result.source_video[None], prompts=[result.config["target"]],
                             reference_prompts=[result.config["source"]])
    return {"weighted": {name: float(value[0]) for name, value in scores.scores.items()},
            "weighted_skipped": list(scores.messages)}


def _json_safe(value):
    """``value`` with every non-finite float replaced by its name ("inf", "nan"), as JSON has no such numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _write_outputs(folder: Path, args, table, result, report: dict, start: float) -> None:

    video_io.write_video(folder / "source.mp4", result.source_video, fps=args.fps)
    video_io.write_video(folder / "edited.mp4", result.edited_video, fps=args.fps)
    clips = [result.source_video, result.edited_video]
    labels = ["source", "edited"]
    if result.input_video is not None:
        clips, labels = [result.input_video] + clips, ["input"] + labels
    zoom = max(1, -(-GIF_MIN_HEIGHT // clips[0].shape[1]))
    clips = [c.repeat(zoom, axis=1).repeat(zoom, axis=2) for c in clips]  # nearest-neighbour enlargement
    video_io.write_video(folder / "side_by_side.gif", video_io.side_by_side(clips, labels), fps=args.fps)
    plot_entropy(folder / "entropy.png", result, table)
    report["timings"]["cli_total"] = round(time.perf_counter() - start, 3)
    (folder / REPORT).write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n")
    written = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if not path.is_dir())
    (folder / MARKER).write_text(json.dumps({"command": "ieadapt_jax.edit", "files": written}) + "\n")


def _replace(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an earlier output in ``out`` is removed only after the move succeeded."""
    old = None
    if out.exists():
        old = out.resolve().parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def plot_entropy(path: Path, result, table) -> None:
    """A bar chart of the source's entropy per profiled site (forward order), injected sites marked."""
    import matplotlib  # deferred: matplotlib takes about a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib takes about a second to import

    profiled = [i for i, e in enumerate(result.entropy) if not math.isnan(e)]
    chosen = set(result.site_positions)
    kinds = [table[i].kind for i in profiled]
    colours = {"spatial_self": "tab:blue", "temporal": "tab:orange", "joint": "tab:green", "cross": "tab:purple"}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(profiled) + 2), 3.6))
    values = [result.entropy[i] for i in profiled]
    bars = ax.bar(range(len(profiled)), values, color=[colours.get(k, "gray") for k in kinds])
    for bar, site in zip(bars, profiled):
        if site in chosen:
            bar.set_edgecolor("red")
            bar.set_linewidth(2.0)
            ax.plot(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, marker="v", color="red", markersize=5)
    outside = len(chosen - set(profiled))
    note = f"; {outside} injected sites not profiled (cross-attention)" if outside else ""
    ax.set_title(f"source entropy per self-attention site; {result.method} injects {len(chosen)} (red){note}",
                 fontsize=9)
    ax.set_xticks(range(len(profiled)), [f"{table[i].kind[0].upper()}{table[i].kind_index}" for i in profiled],
                  fontsize=6, rotation=90)
    ax.set_xlabel("self-attention site in forward order (S: spatial, T: temporal, J: joint; per-kind index)")
    ax.set_ylabel("entropy / log N")
    ax.set_ylim(0, 1.08)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for k, c in colours.items() if k in kinds]
    ax.legend(handles, [k for k in colours if k in kinds], fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(report: dict) -> str:
    lines = [f"edited {report['config']['source']!r} -> {report['config']['target']!r} with {report['config']['method']}: "
             f"{len(report['chosen_sites'])} sites injected"]
    toy = report["metrics"].get("toy")
    if isinstance(toy, dict):
        lines.append(f"  toy scores: success={toy['success']} kept={toy['kept']} mask IoU={toy['mask_iou']:.3f} "
                     f"centroid error={toy['centroid_error']:.2f}px background PSNR={toy['background_psnr']:.1f}dB")
    for key in ("reconstruction_psnr", "vae_psnr"):
        if key in report["metrics"]:
            lines.append(f"  {key.replace('_', ' ')}: {report['metrics'][key]} dB")
    lines.append(f"  wrote {', '.join(report['outputs'])} in {report['timings'].get('cli_total', 0):.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
