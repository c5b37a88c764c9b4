"""``python -m ieadapt_jax.scoring`` (the ``score`` command): score video files with the weight-based metrics
(:mod:`ieadapt_jax.scoring`); one line per video and metric, optionally a JSON file (written to a temporary file
beside it and renamed). Bad input prints ``error: ...`` and exits 2; Ctrl-C exits 130."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import IEAdaptError
from ..scoring import (
    DEFAULT_BATCH,
    METRICS,
    WEIGHTS_LAYOUT,
    MetricError,
    compute_metrics,
    load_metric_weights,
)
from ..video_io import read_video
from .common import UsageError, exit_with, run_command


def main(argv: Sequence[str] | None = None) -> int:
    """Score video files; prints one line per video and metric, optionally writes them as JSON. Bad input
    exits 2 with a message."""
    return run_command(_main, argv)


def entry() -> None:
    """The installed ``ieadapt-score`` script."""
    exit_with(main())


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ieadapt_jax.scoring",
        description="Score videos with CLIP score, CLIP directional similarity, LAION aesthetic score, "
        "VBench subject consistency and LPIPS, from local weights.",
        epilog="--metrics-weights layout:\n" + WEIGHTS_LAYOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--metrics-weights", required=True, metavar="DIR", help="weights folder (layout below)")
    parser.add_argument("--video", required=True, nargs="+", metavar="PATH", help="videos to score (mp4, gif, frame folder)")
    parser.add_argument("--reference", nargs="+", metavar="PATH", help="one reference (source) video per --video")
    parser.add_argument("--prompt", nargs="+", metavar="TEXT", help="the videos' prompt(s): one, or one per video")
    parser.add_argument("--reference-prompt", nargs="+", metavar="TEXT", help="the references' prompt(s)")
    parser.add_argument("--metrics", metavar="A,B", help=f"comma-separated subset of: {', '.join(METRICS)}")
    parser.add_argument("--num-frames", type=int, metavar="F", help="score only the first F frames")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="frames per compiled batch")
    parser.add_argument("--json", metavar="FILE", help="also write {video: {metric: value}} to FILE")
    args = parser.parse_args(argv)

    if args.json and not Path(args.json).expanduser().absolute().parent.is_dir():
        raise UsageError(f"--json {args.json}: its folder does not exist")
    try:
        names = None if args.metrics is None else [n.strip() for n in args.metrics.split(",") if n.strip()]
        n = len(args.video)
        references = _per_video(args.reference, n, "--reference", broadcast=False)
        prompts = _per_video(args.prompt, n, "--prompt")
        reference_prompts = _per_video(args.reference_prompt, n, "--reference-prompt")
        weights = load_metric_weights(args.metrics_weights)
        table: dict[str, dict[str, float]] = {}
        messages: list[str] = []
        for i, path in enumerate(args.video):
            video = read_video(path, num_frames=args.num_frames)[None]
            reference = None if references is None else read_video(references[i], num_frames=args.num_frames)[None]
            result = compute_metrics(
                weights, videos=video, references=reference, names=names, batch_size=args.batch_size,
                prompts=None if prompts is None else [prompts[i]],
                reference_prompts=None if reference_prompts is None else [reference_prompts[i]],
            )
            table[path] = {name: float(value[0]) for name, value in result.scores.items()}
            messages += [m for m in result.messages if m not in messages]
    # read_video's argument checks (--num-frames 0) and the metric models' input checks raise plain ValueError
    except (ValueError, OSError) as e:
        if isinstance(e, IEAdaptError):
            raise
        raise UsageError(str(e)) from None
    for message in messages:
        print(message, file=sys.stderr)
    for path, scores in table.items():
        for name, value in scores.items():
            print(f"{path}\t{name}\t{value:.6f}")
    if args.json:
        target = Path(args.json).expanduser()
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(table, indent=2))
        os.replace(tmp, target)
    return 0


def _per_video(values: Sequence[str] | None, n: int, flag: str, *, broadcast: bool = True) -> list[str] | None:
    """``values`` as one per video: None stays None; one value is repeated when ``broadcast``."""
    if values is None:
        return None
    if broadcast and len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise MetricError(f"{flag} takes {'one value or ' if broadcast else ''}one value per --video ({n}), got {len(values)}")
    return list(values)


if __name__ == "__main__":
    entry()
