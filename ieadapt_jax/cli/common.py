"""What every command shares: the model options and :func:`load_components`, the dtype list, the window
syntax, and :func:`run_command`, which turns errors into one ``error: ...`` line (exit 2) and Ctrl-C into
``interrupted`` (exit 130)."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp

from ..core.errors import IEAdaptError
from ..core.jit import set_status
from ..core.jsonfile import read_json_object
from ..core.rewiring import check_window
from ..loading import load_animatediff, load_cogvideox
from ..tiny import tiny_animatediff
from ..toy import load_default
from ..toy.model import TOY_INFO, load_toy

# transformers' "PyTorch was not found" banner is an advisory warning; transformers is first imported when a model's
# tokenizer loads (ieadapt_jax/loading.py), after this line
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
MODEL_KINDS = ("toy", "tiny", "animatediff", "cogvideox")
SNAPSHOT_KINDS = {"animatediff": "a local diffusers AnimateDiff or SD1.5 snapshot",
                  "cogvideox": "a local diffusers CogVideoX snapshot"}
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
OOM_HINT = "use a smaller --height/--width/--frames, or a smaller batch or chunk"


class UsageError(IEAdaptError):
    """A command-line mistake found before any model runs."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model a command loads: ``model`` is a kind (toy, tiny, animatediff, cogvideox) or a snapshot
    folder (its kind read from the folder); ``pretrained`` the snapshot folder of a kind that needs one."""

    model: str = "toy"
    pretrained: str | None = None
    motion_adapter: str | None = None

    @classmethod
    def from_args(cls, args) -> ModelSpec:
        """The spec of parsed :func:`add_model_options` arguments."""
        return cls(args.model, getattr(args, "pretrained", None), getattr(args, "motion_adapter", None))


def add_model_options(parser: argparse.ArgumentParser, *, dtype_default: str = "float32") -> None:
    """The model options every model-loading command takes: --model, --pretrained, --motion-adapter, --dtype."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="toy", metavar="MODEL",
                       help="toy (the shipped toy model, or a toy snapshot given by --pretrained), tiny (a random tiny "
                            "AnimateDiff, for smoke tests), animatediff or cogvideox (a local diffusers snapshot given "
                            "by --pretrained), or a snapshot folder itself (its kind is read from the folder)")
    group.add_argument("--pretrained", default=None, metavar="DIR", help="snapshot folder for --model toy/animatediff/cogvideox")
    group.add_argument("--motion-adapter", default=None,
                       help="MotionAdapter folder or mm_sd_v15 .ckpt/.safetensors for an SD1.5 snapshot")
    choices = (("auto",) if dtype_default == "auto" else ()) + tuple(DTYPES)
    group.add_argument("--dtype", choices=choices, default=dtype_default,
                       help="parameter and compute dtype" + (" (auto: bfloat16 on GPU/TPU, float32 on CPU)"
                                                             if dtype_default == "auto" else " (bfloat16 on a GPU)"))


def dtype(name: str):
    """The jax dtype of a --dtype value ("auto": bfloat16 on accelerators, float32 on CPU)."""
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    if name not in DTYPES:
        raise UsageError(f"--dtype {name!r}: use one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def model_kind(spec: ModelSpec) -> str:
    """The kind (toy, tiny, animatediff, cogvideox) ``spec`` loads, checked without loading anything."""
    if spec.model in MODEL_KINDS:
        if spec.model in SNAPSHOT_KINDS and spec.pretrained is None:
            raise UsageError(f"--model {spec.model} needs --pretrained DIR ({SNAPSHOT_KINDS[spec.model]})")
        if spec.model == "tiny" and spec.pretrained is not None:
            raise UsageError("--model tiny is built in memory; it takes no --pretrained")
        folder, kind = spec.pretrained, spec.model
    else:
        if spec.pretrained is not None:
            raise UsageError(f"--model {spec.model} is a folder; give it alone, or --model KIND --pretrained DIR")
        folder, kind = spec.model, None
    for option, path in (("--pretrained" if kind else "--model", folder), ("--motion-adapter", spec.motion_adapter)):
        if path is not None and not Path(path).expanduser().exists():
            hint = "" if kind else f" (use {', '.join(MODEL_KINDS)} or a snapshot folder)"
            raise UsageError(f"{option} {path}: no such file or folder{hint}")
    if kind is None:
        root = Path(folder).expanduser()
        index = root / "model_index.json"
        if (root / TOY_INFO).is_file():
            kind = "toy"
        elif index.is_file() and "CogVideoX" in str(read_json_object(index, UsageError).get("_class_name", "")):
            kind = "cogvideox"
        else:
            kind = "animatediff"
    if spec.motion_adapter is not None and kind != "animatediff":
        raise UsageError("--motion-adapter goes with --model animatediff (an SD1.5 snapshot)")
    return kind


def load_components(spec: ModelSpec, dtype_name: str = "float32"):
    """The pipeline components ``spec`` names, in ``dtype_name`` (a --dtype value); the one way every command
    picks a model."""
    kind, chosen = model_kind(spec), dtype(dtype_name)
    folder = spec.pretrained if spec.model in MODEL_KINDS else spec.model
    folder = None if folder is None else Path(folder).expanduser()
    if kind == "tiny":
        return tiny_animatediff(dtype=chosen)
    if kind == "toy":
        return load_default(chosen) if folder is None else load_toy(folder, chosen)
    if kind == "cogvideox":
        return load_cogvideox(folder, dtype=chosen)
    adapter = None if spec.motion_adapter is None else Path(spec.motion_adapter).expanduser()
    return load_animatediff(folder, motion_adapter=adapter, dtype=chosen)


def parse_window(text: str | None, num_steps: int | None = None) -> tuple[int, int] | None:
    """``--window START:STOP`` (0-based steps, STOP excluded) as (start, stop), checked like every step window
    (:func:`ieadapt_jax.core.rewiring.check_window`)."""
    if text is None:
        return None
    start, colon, stop = text.partition(":")
    try:
        window = (int(start), int(stop))
    except ValueError:
        window = None
    if not colon or window is None:
        raise UsageError(f"--window {text!r}: expected START:STOP (0-based steps, STOP excluded), e.g. 0:10")
    check_window(window, num_steps, what="--window START:STOP", error=UsageError)
    return window


def positive(value: int | None, option: str) -> None:
    """``option`` must be at least 1 when given."""
    if value is not None and value < 1:
        raise UsageError(f"{option} must be at least 1, got {value}")


def prompts_given(**prompts: str | None) -> None:
    """Refuse empty prompts: ``source="..."`` is --source; None means not given."""
    for name, text in prompts.items():
        if text is not None and not text.strip():
            raise UsageError(f"--{name.replace('_', '-')} is empty; give a prompt")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an out-of-memory: MemoryError, or XLA's RESOURCE_EXHAUSTED."""
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error)


def run_command(main, argv=None) -> int:
    """Run ``main(argv)`` (returning an exit status or None) as a command: an :class:`IEAdaptError` prints
    ``error: <message>`` on stderr and returns 2, an out-of-memory an error suggesting smaller sizes (2), Ctrl-C
    ``interrupted`` (130). Status lines (compiles) go to stderr (a command's --quiet calls :func:`quiet`). Other
    exceptions are bugs and keep their traceback."""
    set_status(lambda line: print(line, file=sys.stderr, flush=True))
    try:
        return main(argv) or 0
    except IEAdaptError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: out of memory ({first[:200]}); {OOM_HINT}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        set_status(None)


def exit_with(code: int) -> None:
    """End the process with ``code`` (what ``python -m`` and the installed scripts do with a command's status).

    After Ctrl-C (130) the process ends at once, without Python's shutdown, which would tear down the runtime
    under a computation still in flight."""
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def quiet() -> None:
    """No status lines for the rest of this command."""
    set_status(None)


def no_subcommand(parser: argparse.ArgumentParser) -> int:
    """A command called without its subcommand: print the help, exit status 2."""
    parser.print_help(sys.stderr)
    return EXIT_ERROR
