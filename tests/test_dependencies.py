"""Dependencies point one way (docs: the house): no app imports ``config``; the engine
(``follow_ups``), ``notifications`` and ``scheduling`` know nothing of orders or the catalog; ``shop``
never imports ``orders``."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "shop": {"config", "orders", "ops"},
    "orders": {"config", "ops"},
    "follow_ups": {"config", "orders", "shop", "ops"},
    "notifications": {"config", "orders", "shop", "follow_ups", "ops"},
    "scheduling": {"config", "orders", "shop", "follow_ups", "ops"},
    "ops": {"config"},
    "devtools": {"config", "orders"},
}


def imported_top_level_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_the_app_imports_only_what_it_may(app):
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_top_level_packages(path) & FORBIDDEN[app])
        for path in (REPO / app).rglob("*.py")
        if "migrations" not in path.parts
    }
    assert {path: names for path, names in offenders.items() if names} == {}
