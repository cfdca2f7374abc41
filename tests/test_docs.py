"""The docs name the tests that prove each claim: every such name must exist, so a renamed or
deleted test cannot leave a claim without its proof."""

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
