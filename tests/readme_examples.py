"""Running the README's ```py examples (which need real checkpoints) on tiny snapshots, with substitutions."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def run_example(markers: tuple[str, ...], substitutions: dict[str, str], name: str) -> dict:
    """Execute the one ```py block of README.md containing every marker, after replacing each key of
    ``substitutions`` (which must occur in it) by its value; returns the block's globals."""
    (block,) = [b for b in re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S)
                if all(m in b for m in markers)]
    for old, new in substitutions.items():
        assert old in block, old
        block = block.replace(old, new)
    scope: dict = {}
    exec(compile(block, f"README.md {name}", "exec"), scope)
    return scope
