"""The docs name the tests that prove each claim: every such name must exist, so a renamed or
deleted test cannot leave a claim without its proof. Every link from one doc to another reaches
its file and, when it names one, its heading."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def references(doc: Path) -> list[tuple[str, str | None]]:
    found, path = [], None
    for match in REFERENCE.finditer(doc.read_text()):
        path = match.group(1) or path
        if path and (match.group(1) or match.group(2)):
            found.append((path, match.group(2)))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_test_the_docs_name_exists(doc):
    missing = []
    for path, name in references(doc):
        source = REPO / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(doc: Path) -> set[str]:
    """GitHub's ids for a document's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", doc.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_link_between_the_docs_reaches_its_file_and_heading(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # another site: not checked here
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    assert broken == []
