"""What an edit writes: report.json (settings, chosen sites with their entropies, metrics, timings), the
videos, side_by_side.gif and entropy.png, and the one-paragraph summary the edit command prints."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .. import video_io
from ..scoring import compute_metrics, load_metric_weights
from ..toy.world import VocabularyError
from .toy_scores import score_edit

OUTPUTS = ("source.mp4", "edited.mp4", "side_by_side.gif", "entropy.png", "report.json")
REPORT = "report.json"
GIF_MIN_HEIGHT = 128


def build_report(result, components, *, kind: str, dtype: str, video: str | None = None, mask_file: str | None = None,
                 metrics_weights: str | Path | None = None) -> dict:
    """report.json's contents for an :class:`~ieadapt_jax.editing.EditResult` of ``components`` (model ``kind``:
    toy, animatediff, cogvideox): toy edits are scored with :func:`score_edit`, and with ``metrics_weights``
    the weight-based metrics of :mod:`ieadapt_jax.scoring` are added."""
    table = components.denoiser.site_table
    entropy = [None if math.isnan(e) else round(float(e), 6) for e in result.entropy]
    metrics = dict(result.metrics)
    if kind == "toy":
        try:
            metrics["toy"] = score_edit(result.source_video, result.edited_video, result.config["source"],
                                        result.config["target"])
        except (ValueError, VocabularyError) as e:
            metrics["toy"] = f"not scored: {e}"
    if metrics_weights is not None:
        metrics.update(weighted_metrics(Path(metrics_weights).expanduser(), result))
    return {
        "model": {"kind": kind, "path": components.path, "dtype": dtype},
        "config": {**result.config, "window": list(result.config["window"]) if result.config["window"] else None,
                   "video": video, "mask_file": mask_file},
        "chosen_sites": [{"name": table[s].name, "kind": table[s].kind, "entropy": entropy[s]}
                         for s in result.site_positions],
        "entropy": [{"name": site.name, "kind": site.kind, "entropy": entropy[i]} for i, site in enumerate(table)
                    if entropy[i] is not None],
        "metrics": metrics,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "outputs": list(OUTPUTS),
    }


def weighted_metrics(folder: Path, result) -> dict:
    """The weight-based metrics (:mod:`ieadapt_jax.scoring`) of the edit: the edited video against the target
    prompt and the source video / prompt; the ones the folder's weights do not allow are listed as skipped."""
    scores = compute_metrics(load_metric_weights(folder), videos=result.edited_video[None],
                             references=result.source_video[None], prompts=[result.config["target"]],
                             reference_prompts=[result.config["source"]])
    return {"weighted": {name: float(value[0]) for name, value in scores.scores.items()},
            "weighted_skipped": list(scores.messages)}


def json_safe(value):
    """``value`` with every non-finite float replaced by its name ("inf", "nan"), as JSON has no such numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_outputs(folder: Path, result, table, report: dict, *, fps: float) -> None:
    """Write :data:`OUTPUTS` of an edit into ``folder``."""
    video_io.write_video(folder / "source.mp4", result.source_video, fps=fps)
    video_io.write_video(folder / "edited.mp4", result.edited_video, fps=fps)
    clips = [result.source_video, result.edited_video]
    labels = ["source", "edited"]
    if result.input_video is not None:
        clips, labels = [result.input_video] + clips, ["input"] + labels
    zoom = max(1, -(-GIF_MIN_HEIGHT // clips[0].shape[1]))
    clips = [c.repeat(zoom, axis=1).repeat(zoom, axis=2) for c in clips]  # nearest-neighbour enlargement
    video_io.write_video(folder / "side_by_side.gif", video_io.side_by_side(clips, labels), fps=fps)
    plot_entropy(folder / "entropy.png", result, table)
    (folder / REPORT).write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")


def output_bytes(frames: int, height: int, width: int, real_video: bool) -> int:
    """A generous estimate of what :func:`write_outputs` writes (uncompressed videos and the enlarged GIF)."""
    zoom = max(1, -(-GIF_MIN_HEIGHT // max(height, 1)))
    clip = frames * height * width * 3
    return 2 * clip + (3 if real_video else 2) * clip * zoom * zoom + (1 << 20)


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


def summary(report: dict) -> str:
    """The lines the edit command prints when done."""
    lines = [(f"edited {report['config']['source']!r} -> {report['config']['target']!r} with "
              f"{report['config']['method']}: {len(report['chosen_sites'])} sites injected")]
    toy = report["metrics"].get("toy")
    if isinstance(toy, dict):
        lines.append(f"  toy scores: success={toy['success']} kept={toy['kept']} mask IoU={toy['mask_iou']:.3f} "
                     f"centroid error={toy['centroid_error']:.2f}px background PSNR={toy['background_psnr']:.1f}dB")
    for key in ("reconstruction_psnr", "vae_psnr"):
        if key in report["metrics"]:
            lines.append(f"  {key.replace('_', ' ')}: {report['metrics'][key]} dB")
    lines.append(f"  wrote {', '.join(report['outputs'])} in {report['timings'].get('cli_total', 0):.1f} s")
    return "\n".join(lines)
