"""The edit command (``python -m ieadapt_jax.edit``, ``ieadapt-edit``): entropy-guided video editing (paper §4.2).

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
timings). Everything is written to a temporary folder next to ``--out`` and moved into place at the end
(:mod:`ieadapt_jax.outputs`): a failed or interrupted run leaves ``--out`` as it was, and a folder holding
anything an earlier edit did not write is refused before computing (``--overwrite`` adds the outputs to it
and keeps the other files). Exit codes: 0 done, 2 a mistake in the arguments or inputs (the message says
which), 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from .. import video_io
from ..core.attention import BACKENDS
from ..editing import edit
from ..editing.presets import DEFAULT_RATIO, METHODS
from ..editing.report import OUTPUTS, build_report, output_bytes, summary, write_outputs
from ..outputs import OutputFolder
from ..toy.model import read_toy_info
from .common import (
    ModelSpec,
    UsageError,
    add_model_options,
    exit_with,
    load_components,
    model_kind,
    parse_window,
    positive,
    prompts_given,
    quiet,
    run_command,
)

TOY_SOURCE = "a large red circle moving right on a white background"
TOY_TARGET = "a large blue circle moving right on a white background"
DEFAULT_STEPS = 25
ANIMATEDIFF_GUIDANCE = 7.5
COGVIDEOX_GUIDANCE = 6.0  # diffusers' CogVideoXPipeline default
# (frames, height, width) when not given: the toy world's, AnimateDiff's (SD1.5) and CogVideoX's (49 = 4·12 + 1).
DEFAULT_SIZES = {"toy": (16, 32, 32), "tiny": (16, 32, 32), "animatediff": (16, 512, 512), "cogvideox": (49, 480, 720)}
# DDIM-inverted real toy videos need more CFG to be edited: benchmarks/README.md#real-video-guidance-of-the-toy-model
REAL_VIDEO_GUIDANCE = 3.0
COMMAND = "edit"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ieadapt_jax.edit",
                                     description="Entropy-guided video editing (IE-Adapt, paper §4.2) and its baselines.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="methods:\n" + "\n".join(f"  {k:10s} {m.summary}" for k, m in METHODS.items()))
    add_model_options(parser)
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="attention backend")

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
    edit.add_argument("--window", default=None, metavar="START:STOP",
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
                        help="output folder (default: edit_output); an earlier edit's output is replaced, any other "
                             "non-empty folder is refused")
    output.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out: the files an earlier edit wrote there are replaced, every "
                             "other file is kept (a file of the user's with an output's name is never replaced)")
    output.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos")
    output.add_argument("--metrics-weights", default=None, metavar="DIR",
                        help="folder of metric weights (layout: python -m ieadapt_jax.scoring --help): adds CLIP score, "
                             "CLIP directional similarity, aesthetic score, subject consistency and LPIPS to report.json")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser



def main(argv: list[str] | None = None) -> int:
    """Run the edit command; returns the exit code (0 done, 2 a user mistake reported on stderr, 130 Ctrl-C)."""
    return run_command(_main, argv)


def entry() -> None:
    """The installed ``ieadapt-edit`` script."""
    exit_with(main())


def _main(argv) -> int:
    args = _parser().parse_args(argv)
    if args.quiet:
        quiet()
    kind = _check_args(args)
    settings = _settings(args, kind)
    out = OutputFolder(args.out, COMMAND, overwrite=args.overwrite, outputs=OUTPUTS)
    video, mask = _inputs(args, settings)
    frames = settings["frames"] if video is None else video.shape[0]
    out.open(output_bytes(frames, settings["height"], settings["width"], video is not None))
    with out as folder:
        report = _run(args, kind, settings, video, mask, folder)
    if not args.quiet:
        print(summary(report))
    return 0


def _check_args(args) -> str:
    """Check the whole request before anything is loaded or created; returns the model's kind."""
    kind = model_kind(ModelSpec.from_args(args))
    prompts_given(source=args.source, target=args.target, negative_prompt=None)
    if kind != "toy" and (args.source is None or args.target is None):
        raise UsageError(f"--model {args.model} needs --source and --target prompts")
    if not 0.0 < args.ratio <= 1.0:
        raise UsageError(f"--ratio must be in (0, 1], got {args.ratio}")
    positive(args.steps, "--steps")
    if args.guidance_scale is not None and not math.isfinite(args.guidance_scale):
        raise UsageError(f"--guidance-scale must be a finite number, got {args.guidance_scale}")
    parse_window(args.window)
    if args.mask is not None and args.mask_words is not None:
        raise UsageError("give --mask or --mask-words, not both")
    if args.mask_words is not None and not args.mask_words.split():
        raise UsageError("--mask-words needs at least one word of the source prompt")
    frames = _frames(args, kind)
    if frames < 1 or args.frame_stride < 1:
        raise UsageError(f"--frames and --frame-stride must be at least 1, got {frames} and {args.frame_stride}")
    positive(args.height, "--height")
    positive(args.width, "--width")
    if kind == "cogvideox" and args.video is not None and (frames - 1) % 4:
        raise UsageError(f"--model cogvideox reads 4k + 1 frames of --video (its VAE keeps frame 1, then packs 4 frames "
                         f"into each latent frame); got --frames {frames}: use {(frames - 1) // 4 * 4 + 1}")
    if not (math.isfinite(args.fps) and args.fps > 0):
        raise UsageError(f"--fps must be a positive number, got {args.fps}")
    for name in ("video", "mask", "metrics_weights"):
        path = getattr(args, name)
        if path is not None and not Path(path).expanduser().exists():
            raise UsageError(f"--{name.replace('_', '-')} {path}: no such file or folder")
    return kind


def _frames(args, kind: str) -> int:
    """--frames, or the model's default."""
    return args.frames if args.frames is not None else DEFAULT_SIZES[kind][0]


def _settings(args, kind: str) -> dict:
    """The request's values with the model's defaults filled in (the guidance default of a toy snapshot is read
    later, from the loaded snapshot)."""
    _, height, width = DEFAULT_SIZES[kind]
    steps = args.steps if args.steps is not None else DEFAULT_STEPS
    guidance = {"tiny": ANIMATEDIFF_GUIDANCE, "animatediff": ANIMATEDIFF_GUIDANCE, "cogvideox": COGVIDEOX_GUIDANCE}.get(kind)
    if kind == "toy" and args.video is not None:
        guidance = REAL_VIDEO_GUIDANCE
    return {
        "source": args.source if args.source is not None else TOY_SOURCE,
        "target": args.target if args.target is not None else TOY_TARGET,
        "guidance_scale": args.guidance_scale if args.guidance_scale is not None else guidance,
        "height": args.height if args.height is not None else height,
        "width": args.width if args.width is not None else width,
        "steps": steps,
        "frames": _frames(args, kind),
        "window": parse_window(args.window, steps),
    }


def _inputs(args, settings: dict):
    """(video, mask) read from --video and --mask (None where not given); a mask must have the size of the video
    it goes with (the --video's frames, or the output size), never silently resized from another size."""
    size = (settings["height"], settings["width"])
    video = mask = None
    if args.video is not None:
        video = video_io.read_video(Path(args.video).expanduser(), num_frames=settings["frames"], size=size,
                                    frame_stride=args.frame_stride)
    if args.mask is not None:
        sizes = [size] if args.video is None else [video_io.frame_size(Path(args.video).expanduser()), size]
        mask = video_io.read_mask(Path(args.mask).expanduser(), num_frames=settings["frames"] if video is None else len(video),
                                  size=size, frame_stride=args.frame_stride, sizes=sizes)
    return video, mask


def _run(args, kind: str, settings: dict, video, mask, folder: Path) -> dict:
    """Load the model, edit, and write every output into ``folder`` (the temporary output folder)."""
    start = time.perf_counter()
    components = load_components(ModelSpec.from_args(args), args.dtype)
    guidance = settings["guidance_scale"]
    if guidance is None:  # a toy snapshot's own default
        guidance = read_toy_info(components.path)["default_guidance_scale"]
    result = edit(
        components, settings["source"], settings["target"], video=video, method=args.method, ratio=args.ratio,
        sites=args.sites, window=settings["window"], profile=args.profile,
        num_frames=settings["frames"] if video is None else video.shape[0], height=settings["height"],
        width=settings["width"], num_inference_steps=settings["steps"], guidance_scale=guidance,
        use_dynamic_cfg=args.dynamic_cfg, negative_prompt=args.negative_prompt, seed=args.seed, mask=mask,
        mask_words=args.mask_words, drive_source=not args.no_drive_source, backend=args.backend,
        progress=not args.quiet,
    )
    report = build_report(result, components, kind=kind, dtype=args.dtype, video=args.video, mask_file=args.mask,
                          metrics_weights=args.metrics_weights)
    report["timings"]["cli_total"] = round(time.perf_counter() - start, 3)
    write_outputs(folder, result, components.denoiser.site_table, report, fps=args.fps)
    return report


if __name__ == "__main__":
    entry()
