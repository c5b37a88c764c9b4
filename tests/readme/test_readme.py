"""Every ```python block of README.md and of docs/*.md runs as written.

Blocks that need real checkpoints are fenced as ```py instead; readme_examples.run_example runs selected ones on
tiny snapshots with substitutions (test_readme_loading.py, test_readme_cogvideox.py).
"""
import pytest
from support.readme_examples import DOC_FILES, ROOT, blocks

BLOCKS = [(path, index, code) for path in DOC_FILES for index, code in enumerate(blocks(path, "python"))]


def test_readme_and_docs_have_python_examples():
    assert blocks(ROOT / "README.md", "python"), "the README's front page keeps a runnable example"
    # README and docs together held 7 runnable blocks before the reference sections moved to docs/, plus the
    # front page's example: the count must not drop (a block that moves keeps running).
    assert len(BLOCKS) >= 8, [f"{p.relative_to(ROOT)}:{i}" for p, i, _ in BLOCKS]


@pytest.mark.parametrize(("path", "index", "code"), BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{i}" for p, i, _ in BLOCKS])
def test_doc_python_block_runs(path, index, code):
    exec(compile(code, f"{path.relative_to(ROOT)} python block {index}", "exec"), {})
