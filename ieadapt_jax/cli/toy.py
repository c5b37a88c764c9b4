"""The toy command (``python -m ieadapt_jax.toy {train,export,eval}``, ``ieadapt-toy``): train, export and evaluate
the toy text-to-video model.

    python -m ieadapt_jax.toy train --out runs/toy --steps 3000 --batch 64 --max-minutes 6
    python -m ieadapt_jax.toy export --out runs/toy            # -> runs/toy/model (bf16 snapshot)
    python -m ieadapt_jax.toy eval --model runs/toy/model      # -> runs/toy/eval/{eval.json,samples.gif}

``train --export`` exports after training. A training run folder is resumed by rerunning; export and eval write
their folders through :mod:`ieadapt_jax.outputs` (an earlier export or eval is replaced, any other non-empty
folder refused unless --overwrite, which keeps the files it did not write). Exit codes: 0 done, 2 bad arguments
or folders (one ``error:`` line), 130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..core.attention import BACKENDS
from ..outputs import OutputFolder
from ..toy.evaluate import EVAL_FILE, SAMPLES_FILE, evaluate
from ..toy.model import ARCHS, PREDICTIONS
from ..toy.train import LOSS_WEIGHTINGS, NOISES, PRECISIONS, TrainConfig, export, train
from .common import exit_with, no_subcommand, positive, quiet, run_command

MODEL_FOLDER = "model"
EVAL_FOLDER = "eval"


def _parser() -> argparse.ArgumentParser:

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m ieadapt_jax.toy", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="{train,export,eval}")

    train = commands.add_parser("train", help="train (or resume) a run; see ieadapt_jax.toy.train")
    train.add_argument("--out", required=True, help="run folder (resumed when it holds a run)")
    train.add_argument("--steps", type=int, default=defaults.steps, help="total steps (cosine schedule length)")
    train.add_argument("--batch", type=int, default=defaults.batch)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--warmup", type=int, default=defaults.warmup)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--arch", choices=sorted(ARCHS), default=defaults.arch)
    train.add_argument("--precision", choices=sorted(PRECISIONS), default=defaults.precision)
    train.add_argument("--ema-decay", type=float, default=defaults.ema_decay,
                       help="decay of the parameter moving average that export writes")
    train.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, default=defaults.loss_weighting,
                       help="eps: plain ε-MSE; v: ε-MSE/ᾱ_t (the v-prediction loss), which makes the noisiest "
                            "steps, where motion must come from the caption, count")
    train.add_argument("--noise", choices=NOISES, default=defaults.noise,
                       help="training noise: white, or pyramid (per-frame multi-scale; hides object positions "
                            "at more timesteps)")
    train.add_argument("--min-timestep", type=int, default=defaults.min_timestep,
                       help="lowest training timestep drawn (default 0: all)")
    train.add_argument("--prediction", choices=PREDICTIONS, default=defaults.prediction,
                       help="what the UNet predicts: epsilon (the noise) or v_prediction (v = √ᾱ·ε − √(1−ᾱ)·x0)")
    train.add_argument("--zero-terminal-snr", action="store_true",
                       help="rescale SD's schedule so that ᾱ at t=999 is 0 (needs --prediction v_prediction): at t=999 "
                            "only the caption says where objects are and how they move, not leftover signal in the noise")
    train.add_argument("--fresh-text-encoder", action="store_true",
                       help="with --init-from: keep the snapshot's UNet but draw a new text encoder from --seed")
    train.add_argument("--init-from", default=None, metavar="SNAPSHOT",
                       help="start from a toy-model snapshot folder (fine-tune) instead of random weights")
    train.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    train.add_argument("--devices", type=int, default=None,
                       help="local devices sharing the batch (data parallel; default: all)")
    train.add_argument("--attention-backend", choices=BACKENDS, default=defaults.attention_backend,
                       help="attention backend of the training forward (see ieadapt_jax.attend)")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="stop with a checkpoint after this much wall time (rerun to continue)")
    train.add_argument("--export", action="store_true", help=f"export <out>/{MODEL_FOLDER} when training stops")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--overwrite", action="store_true",
                       help=f"with --export: write into a non-empty <out>/{MODEL_FOLDER}, keeping the files an export "
                            "did not write")

    export = commands.add_parser("export", help="write the latest checkpoint as a toy-model snapshot (bf16)")
    export.add_argument("--out", required=True, help="run folder")
    export.add_argument("--to", default=None, help=f"snapshot folder (default <out>/{MODEL_FOLDER})")
    export.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --to, keeping the files an export did not write")

    evaluate = commands.add_parser("eval", help="held-out accuracy of a snapshot; writes eval.json, samples.gif")
    evaluate.add_argument("--model", required=True, help="toy-model snapshot folder")
    evaluate.add_argument("--out", default=None, help=f"output folder (default: <model>/../{EVAL_FOLDER})")
    evaluate.add_argument("--num", type=int, default=200)
    evaluate.add_argument("--steps", type=int, default=25, help="DDIM steps")
    evaluate.add_argument("--guidance-scale", type=float, default=None, help="default: the snapshot's")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--batch", type=int, default=50, help="videos per sampling run")
    evaluate.add_argument("--attention-backend", choices=BACKENDS, default="auto",
                          help="attention backend of the sampling forward (see ieadapt_jax.attend)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="write into a non-empty --out, keeping the files an eval did not write")
    return parser


def _train(args) -> None:
    config = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed,
                         arch=args.arch, precision=args.precision, checkpoint_every=args.checkpoint_every,
                         attention_backend=args.attention_backend, ema_decay=args.ema_decay,
                         loss_weighting=args.loss_weighting, noise=args.noise,
                         min_timestep=args.min_timestep, init_from=args.init_from,
                         prediction=args.prediction, zero_terminal_snr=args.zero_terminal_snr,
                         fresh_text_encoder=args.fresh_text_encoder)
    folder = OutputFolder(Path(args.out) / MODEL_FOLDER, "toy export", overwrite=args.overwrite,
                          option="--export") if args.export and Path(args.out).is_dir() else None
    result = train(config, args.out, max_minutes=args.max_minutes, progress=not args.quiet, devices=args.devices)
    print(json.dumps({k: str(v) for k, v in dataclasses.asdict(result).items()}))
    if args.export:
        folder = folder or OutputFolder(Path(args.out) / MODEL_FOLDER, "toy export", overwrite=args.overwrite,
                                        option="--export")
        _export_to(args.out, folder)


def _export_to(run: str, folder: OutputFolder) -> None:
    """Export run ``run`` through ``folder``."""
    folder.open()
    with folder as tmp:
        export(run, tmp)
    print(f"exported {folder.target}")


def _export(args) -> None:
    to = args.to or Path(args.out) / MODEL_FOLDER
    _export_to(args.out, OutputFolder(to, "toy export", overwrite=args.overwrite, option="--to"))


def _eval(args) -> None:
    for option in ("num", "steps", "batch"):
        positive(getattr(args, option), f"--{option}")
    out = args.out or Path(args.model).resolve().parent / EVAL_FOLDER
    folder = OutputFolder(out, "toy eval", overwrite=args.overwrite, outputs=(EVAL_FILE, SAMPLES_FILE))
    folder.open()
    with folder as tmp:
        report = evaluate(args.model, tmp, num=args.num, num_inference_steps=args.steps,
                          guidance_scale=args.guidance_scale, seed=args.seed, batch=args.batch,
                          backend=args.attention_backend, progress=not args.quiet)
    summary = {k: report[k] for k in ("accuracy", "bars", "passed", "num", "guidance_scale", "seconds")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {Path(out) / EVAL_FILE} and {Path(out) / SAMPLES_FILE}")


def main(argv: list[str] | None = None) -> int:
    """Run the toy command; returns the exit status (0 done, 2 a mistake reported on stderr, 130 Ctrl-C)."""
    return run_command(_main, argv)


def entry() -> None:
    """The installed ``ieadapt-toy`` script."""
    exit_with(main())


def _main(argv) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return no_subcommand(parser)
    if getattr(args, "quiet", False):
        quiet()
    {"train": _train, "export": _export, "eval": _eval}[args.command](args)
    return 0


if __name__ == "__main__":
    entry()
