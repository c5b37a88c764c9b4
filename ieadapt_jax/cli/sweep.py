"""The sweep command (``python -m ieadapt_jax.sweep``, ``ieadapt-sweep``): perturbation analysis at scale (the
paper's §3 and supplementary §7). The whole definition (model folder, steps, prompts and their vocabulary,
targets, window) is checked before the sweep folder is created; a non-empty folder that is not a sweep is
refused before the model is loaded. Exit codes: 0 done, 2 a mistake (one ``error:`` line), 130 interrupted."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import jax

from ..loading import CogVideoXComponents
from ..sweep.definition import SweepDefinition, load_prompts
from ..sweep.engine import initialize_distributed, is_toy, run_sweep
from ..sweep.metrics import METRICS, import_plugins
from ..sweep.report import write_report
from ..sweep.store import MANIFEST
from ..sweep.weighted_metrics import register_sweep_metrics
from ..toy import world
from ..toy.model import read_toy_info
from .common import (
    ModelSpec,
    UsageError,
    add_model_options,
    exit_with,
    load_components,
    model_kind,
    no_subcommand,
    parse_window,
    positive,
    run_command,
)

DESCRIPTION = """\
Perturbation analysis of a video diffusion model's attention (paper §3, supplementary §7).

For every prompt and seed, one unperturbed baseline video is generated, then one video per (target, mode):
the attention maps at the target's sites are replaced by the identity I (the output is V), the uniform map U
(the mean of V) or α·I + (1−α)·U, in every denoising step. Each video is measured against its baseline
(SSIM, PSNR, temporal consistency, flicker, motion; toy-world metrics on the toy model; plug-in metrics
with weights), and the entropy and energy of every self-attention map are recorded. The report has the
tables (CSV, Parquet), the paper's figures and a summary that checks the paper's observations.

commands:
  run      generate and measure a sweep (resumable), then write its report
  report   (re)write the report of a sweep folder
  sites    list a model's attention sites (names for site:, block: and regex: targets)
  metrics  list the registered metrics
"""

EPILOG = """\
quick start (the shipped toy model; 8 prompts x (1 baseline + 2 modes x 24 self-attention sites) = 392 videos):
  python -m ieadapt_jax.sweep run --out runs/toy-sweep --prompts toy:8 --steps 25
  python -m ieadapt_jax.sweep run --out runs/toy-sweep ...        # same command again: resumes, skips done videos

the paper's AnimateDiff setting (93 VBench prompts x 2 x 56 self-attention sites, 16x512x512, Euler, 25 steps,
guidance 9, seed 42; 10,509 videos):
  python -m ieadapt_jax.sweep run --out runs/ad-sweep --model path/to/animatediff-snapshot \\
      --prompts vbench --scheduler euler --guidance-scale 9 --seeds 42

CogVideoX (supplementary §7.3: defaults 25 frames 480x720, guidance 6; its sites are the joint ones):
  python -m ieadapt_jax.sweep run --out runs/cog-sweep --model path/to/CogVideoX-5b --prompts vbench

targets (--targets, several allowed; KIND is self (default: spatial, temporal and joint self-attention), spatial,
temporal, joint, cross (mode U only) or all):
  each[:KIND]                 every KIND site singly (the paper's 2n videos per prompt)
  site:NAME                   one site by its diffusers module path (see: python -m ieadapt_jax.sweep sites)
  kind:KIND                   all KIND sites at once (kind:spatial vs kind:temporal)
  block:PREFIX[:KIND]         KIND sites under a module prefix: down, mid, up, down_blocks.1, up_blocks.3.attentions
  blocks[:KIND]               one block: target per down/mid/up group, per block and per block's sub-modules
  entropy:top:PCT[:KIND]      the PCT% KIND sites of highest entropy in each prompt's baseline (needs --record self)
  entropy:bottom:PCT[:KIND]   ... of lowest entropy
  regex:PATTERN               self-attention sites whose name matches PATTERN
  e.g. --targets each blocks kind:spatial kind:temporal entropy:top:50 entropy:bottom:50

modes (--modes): I, U, or numbers α in [0, 1] for α·I + (1−α)·U, e.g. --modes I U 0.25 0.5 0.75

execution:
  Configurations run in chunks: --chunk N per device (default auto: fill 90% of free accelerator memory,
  measured by compiling a one-configuration probe; 4 on CPU). Each chunk is one call of one compiled function
  (the sampling loop vmapped over the chunk and the VAE decode, sharded over all devices with jax.sharding)
  and one call of a compiled measuring function; every chunk has the same shape, so neither recompiles during
  the sweep. --devices N uses the first N local devices. Multi-host: start the same command on every host
  with --distributed (cluster auto-detection) or --coordinator HOST:PORT --num-processes N --process-id I;
  --out must be on a filesystem all hosts see. Results are appended chunk by chunk: a kill loses at most the
  chunk in flight, and rerunning the same command resumes (a folder holding another sweep is refused).
  A progress bar shows videos done and the ETA.

outputs (in --out):
  sweep.json                  the sweep's definition, model fingerprint, sites and metrics
  results.jsonl               one line per finished video: metrics, entropy/energy records
  baselines/, videos/         baseline videos (uint8 .npy) and thumbnails of the first --keep-videos prompts
  report/summary.md           settings, most sensitive sites, group targets, the paper's observations checked
  report/results.{csv,parquet}, records.*, records_by_step.*   the tables
  report/plots/               site_shifts.png (Figs 2, 16), entropy_energy.png (Fig 4), boxplots.png (Figs 18-19),
                              video_grid.png/.gif (Fig 1), alpha.png (Fig 14), groups.png (Fig 15)

metrics:
  Built in: ssim, psnr (dm-pix, against the baseline), temporal_consistency, flicker, motion; on the toy
  model also toy_attributes, toy_structure, toy_dynamics. --metrics-weights DIR adds the paper's weight-based
  metrics whose weights DIR holds (layout: python -m ieadapt_jax.scoring --help): clip_score, aesthetic_score,
  subject_consistency (with _shift columns) and lpips, lpips_vgg (against the baseline); a metric without its
  weights is skipped with a message, never faked. Other metrics are plug-ins: --metrics-plugin MODULE imports
  a module that calls ieadapt_jax.sweep.register_metric(Metric(..., weights="sub/path")) (DIR/sub/path is
  what its setup loads). --metrics NAME ... measures only those.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (``--help`` teaches the whole feature)."""
    parser = argparse.ArgumentParser(prog="python -m ieadapt_jax.sweep", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="{run,report,sites,metrics}")

    run = commands.add_parser("run", help="generate and measure a sweep, then write its report",
                              description="Generate and measure a sweep (resumable), then write its report. "
                                          "See `python -m ieadapt_jax.sweep --help` for targets, modes and outputs.",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--out", required=True, help="output folder (created, or resumed when it holds the same sweep)")
    add_model_options(run, dtype_default="auto")
    what = run.add_argument_group("what to generate")
    what.add_argument("--prompts", default="auto",
                      help="'vbench' (the 93 VBench aesthetic-quality prompts), 'toy:N' (N toy captions), or a text "
                           "file with one prompt per line ('#' comments); auto: toy:16 on a toy model, else vbench")
    what.add_argument("--limit", type=int, help="use only the first N prompts")
    what.add_argument("--seeds", type=int, nargs="+", default=[42], help="noise seeds")
    what.add_argument("--targets", nargs="+", default=["each"], help="where to perturb (see the main --help)")
    what.add_argument("--modes", nargs="+", default=["I", "U"], help="I, U or α values")
    what.add_argument("--frames", type=int, help="frames (default: 16; 25 on CogVideoX)")
    what.add_argument("--height", type=int, help="height in pixels (default: 512; 480 on CogVideoX; 32 on toy models)")
    what.add_argument("--width", type=int, help="width in pixels (default: 512; 720 on CogVideoX; 32 on toy models)")
    what.add_argument("--steps", type=int, default=25, help="denoising steps")
    what.add_argument("--guidance-scale", type=float,
                      help="classifier-free guidance ω (default: the paper's 9.0, 6.0 on CogVideoX; the toy model's own "
                           "on toy models)")
    what.add_argument("--negative-prompt", default="", help="the unconditional row's prompt")
    what.add_argument("--scheduler", choices=("model", "ddim", "euler"), default="model",
                      help="the snapshot's scheduler, or DDIM / Euler on its config (the paper: euler)")
    what.add_argument("--eta", type=float, default=0.0, help="DDIM eta")
    what.add_argument("--perturb-rows", choices=("both", "cond"), default="both",
                      help="perturb both CFG rows (as swapping diffusers attention processors does) or the conditional")
    what.add_argument("--window", metavar="START:STOP", help="perturb only at steps START:STOP (0-based, STOP excluded)")
    what.add_argument("--record", choices=("self", "none"), default="self",
                      help="record entropy/energy of every self-attention site (none: faster, no entropy targets)")
    measure = run.add_argument_group("metrics")
    measure.add_argument("--metrics", nargs="+", help="metric names (default: every registered one that applies)")
    measure.add_argument("--metrics-weights",
                         help="weights folder of the paper's metrics (CLIP, aesthetic, DINO, LPIPS; layout: "
                              "python -m ieadapt_jax.scoring --help)")
    measure.add_argument("--metrics-plugin", action="append", default=[], help="module that registers metrics")
    execution = run.add_argument_group("execution")
    execution.add_argument("--chunk", default="auto", help="configurations per device per chunk, or auto")
    execution.add_argument("--devices", type=int, help="use the first N local devices (default: all)")
    execution.add_argument("--keep-videos", type=int, default=1,
                           help="keep thumbnails of every video of the first N prompts (video grid)")
    execution.add_argument("--backend", default="auto", choices=("auto", "reference", "chunked", "cudnn"),
                           help="attention backend")
    execution.add_argument("--no-progress", action="store_true", help="no progress bar")
    execution.add_argument("--no-report", action="store_true", help="do not write the report after the run")
    execution.add_argument("--distributed", action="store_true",
                           help="multi-host: jax.distributed.initialize() with cluster auto-detection")
    execution.add_argument("--coordinator", help="multi-host: coordinator address HOST:PORT")
    execution.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    execution.add_argument("--process-id", type=int, help="multi-host: this process's id")

    report = commands.add_parser("report", help="(re)write the report (tables, plots, summary) of a sweep folder")
    report.add_argument("out", help="a sweep folder")

    sites = commands.add_parser("sites", help="list a model's attention sites")
    add_model_options(sites, dtype_default="auto")

    metrics = commands.add_parser("metrics", help="list the registered metrics")
    metrics.add_argument("--metrics-weights", help="also register the weight-based metrics this folder has weights for")
    metrics.add_argument("--metrics-plugin", action="append", default=[], help="module that registers metrics")
    return parser


def definition_from_args(args, components):
    """The :class:`SweepDefinition` of ``run``'s arguments (defaults depend on the model)."""

    toy = is_toy(components)
    guidance = args.guidance_scale
    size = (16, 512, 512)
    if isinstance(components, CogVideoXComponents):  # the paper's CogVideoX-5B setting (supplementary §7.1)
        size = (25, 480, 720)
        guidance = 6.0 if guidance is None else guidance
    if toy:

        size = (world.FRAMES, world.HEIGHT, world.WIDTH)
        if guidance is None:
            guidance = float(read_toy_info(components.path)["default_guidance_scale"])
    prompts = args.prompts if args.prompts != "auto" else ("toy:16" if toy else "vbench")
    window = parse_window(args.window, args.steps)
    return SweepDefinition(
        prompts=load_prompts(prompts, args.limit), seeds=tuple(args.seeds), targets=tuple(args.targets),
        modes=tuple(args.modes), num_frames=args.frames or size[0], height=args.height or size[1],
        width=args.width or size[2], num_inference_steps=args.steps,
        guidance_scale=9.0 if guidance is None else guidance, negative_prompt=args.negative_prompt,
        scheduler=args.scheduler, eta=args.eta, perturb_rows=args.perturb_rows, window=window, record=args.record,
    )


def main(argv=None) -> int:
    """Run the sweep command; returns the exit status (0 done, 2 a mistake reported on stderr, 130 Ctrl-C)."""
    return run_command(_main, argv)


def entry() -> None:
    """The installed ``ieadapt-sweep`` script."""
    exit_with(main())


def _main(argv) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return no_subcommand(parser)
    if args.command == "report":
        print(write_report(args.out))
        return 0
    if args.command == "metrics":
        import_plugins(args.metrics_plugin)
        if args.metrics_weights:
            register_sweep_metrics(args.metrics_weights)
        for metric in METRICS.values():
            needs = f" [weights: {metric.weights}]" if metric.weights else ""
            scope = " [toy models]" if metric.models == "toy" else ""
            print(f"{metric.name}: {', '.join(metric.columns)}{scope}{needs}")
            print(textwrap.indent(metric.description, "    "))
        return 0
    spec = ModelSpec.from_args(args)
    model_kind(spec)
    if args.command == "run":
        _check_run(args)
    if args.command == "run" and (args.distributed or args.coordinator):
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    components = load_components(spec, args.dtype)
    if args.command == "sites":
        for i, site in enumerate(components.denoiser.site_table):
            print(f"{i:3d}  {site.kind:<12s} layer {site.kind_index:3d}  {site.name}")
        return 0
    return _run(args, components)


def _check_run(args) -> None:
    """What ``run`` can check before the model is loaded: numbers, the window, the prompts, the folder."""
    for option in ("steps", "frames", "height", "width", "limit"):
        positive(getattr(args, option), f"--{option}")
    parse_window(args.window, args.steps)
    if args.prompts != "auto":
        load_prompts(args.prompts, args.limit)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a folder for the sweep")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UsageError(f"--out {out} is not empty and holds no {MANIFEST}: it is not a sweep folder; name a new or "
                         "empty folder (a sweep folder is resumed by rerunning the same command)")


def _run(args, components) -> int:

    definition = definition_from_args(args, components)
    result = run_sweep(components, definition, args.out, metrics=args.metrics, metrics_weights=args.metrics_weights,
                       metrics_plugins=args.metrics_plugin, chunk=args.chunk, devices=args.devices,
                       keep_videos=args.keep_videos, backend=args.backend, progress=not args.no_progress)
    print(f"{result.done_now} videos generated ({result.done_before} done before, {result.total} in the sweep) in "
          f"{result.seconds:.1f} s on {result.devices} device(s), {result.chunk} per device per chunk")
    if not args.no_report and jax.process_index() == 0:

        print(f"report: {write_report(args.out)}")
    return 0


if __name__ == "__main__":
    entry()
