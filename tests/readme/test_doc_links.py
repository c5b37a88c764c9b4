"""Every relative link of README.md, docs/*.md and benchmarks/README.md points to an existing file (and heading), and
every docs/*.md#anchor or benchmarks/README.md#anchor that a docstring or comment of the package cites exists."""
import re
import unicodedata
from pathlib import Path

import pytest
from support.readme_examples import DOC_FILES, ROOT

PAGES = DOC_FILES + [ROOT / "benchmarks" / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# where the package's sources live (pyproject.toml's package-dir), for citations of the docs in docstrings
SOURCES = [ROOT / "ieadapt_jax", ROOT / "models", ROOT / "convert"]
CITATION = re.compile(r"\b((?:docs/[\w-]+|benchmarks/README)\.md)#([\w-]+)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a markdown page: its headings' slugs (repeats numbered as GitHub does) and explicit ids."""
    text = FENCE.sub("", page.read_text())
    seen: dict[str, int] = {}
    out = set(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text))
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(page: Path) -> list[str]:
    """The relative link targets of a page, outside code blocks and code spans."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are not checked


def test_the_pages_exist_and_link_somewhere():
    assert (ROOT / "docs" / "architecture.md") in PAGES
    assert sum(len(links(page)) for page in PAGES) > 20


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: {file.relative_to(ROOT)} has no heading with anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_docstring_citations_of_the_docs_resolve():
    cited = {}
    for folder in SOURCES:
        for file in folder.rglob("*.py"):
            for page, anchor in CITATION.findall(file.read_text()):
                cited.setdefault((page, anchor), []).append(str(file.relative_to(ROOT)))
    assert cited, "the package's docstrings cite docs/*.md#anchor"
    broken = [f"{page}#{anchor} (cited in {', '.join(files)})" for (page, anchor), files in sorted(cited.items())
              if not (ROOT / page).is_file() or anchor not in anchors(ROOT / page)]
    assert not broken, "\n".join(broken)


def test_anchor_slugs_follow_github():
    assert _slug("Data flow of one edit") == "data-flow-of-one-edit"
    assert _slug("Calling `attend`") == "calling-attend"
    assert _slug("Text-to-video, IE-Adapt guidance and the sampling loop") == \
        "text-to-video-ie-adapt-guidance-and-the-sampling-loop"
    assert _slug("From 28% to 97%") == "from-28-to-97"
