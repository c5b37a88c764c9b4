"""The code blocks of README.md and docs/*.md, and running the ```py examples (which need real checkpoints) on tiny
snapshots, with substitutions."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
# the pages whose code blocks the tests run: the README, then every page of docs/ in name order
DOC_FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def blocks(path: pathlib.Path, language: str) -> list[str]:
    """The bodies of the ```<language> fenced blocks of ``path``, in order (```py is not ```python)."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def run_example(markers: tuple[str, ...], substitutions: dict[str, str], name: str) -> dict:
    """Execute the one ```py block of README.md or docs/*.md containing every marker, after replacing each key of
    ``substitutions`` (which must occur in it) by its value; returns the block's globals."""
    found = [(path, b) for path in DOC_FILES for b in blocks(path, "py") if all(m in b for m in markers)]
    assert len(found) == 1, f"{len(found)} ```py blocks contain {markers}: {[str(p.relative_to(ROOT)) for p, _ in found]}"
    (path, block), = found
    for old, new in substitutions.items():
        assert old in block, old
        block = block.replace(old, new)
    scope: dict = {}
    exec(compile(block, f"{path.relative_to(ROOT)} {name}", "exec"), scope)
    return scope
