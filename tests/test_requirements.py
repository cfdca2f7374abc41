"""The lock files are the install (`make run`, the Dockerfile): they must say what requirements*.txt
say, with hashes, and pin by name every package the code imports, so neither can drift from the other.
`make lock` writes them again after an edit."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INPUTS = {"requirements.lock": "requirements.txt", "requirements-dev.lock": "requirements-dev.txt"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")
LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(.*?)(?=^\S|\Z)", re.M | re.S)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(input_name: str) -> dict[str, str]:
    """The pins people edit, following ``-r`` includes."""
    found = {}
    for line in (REPO / input_name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= pins(line[3:].strip())
        elif line:
            match = PIN.match(line)
            assert match, f"{input_name}: {line!r} is not pinned with =="
            found[canonical(match[1])] = match[2]
    return found


def locked(lock_name: str) -> dict[str, tuple[str, str]]:
    """Each locked package: its version, and the rest of its entry (hashes, what it is there for)."""
    text = (REPO / lock_name).read_text()
    return {canonical(name): (version, rest) for name, version, rest in LOCKED.findall(text)}


@pytest.mark.parametrize("lock_name", INPUTS)
def test_every_pin_people_edit_is_locked_at_the_same_version(lock_name):
    lock = locked(lock_name)

    drifted = {
        name: (version, lock.get(name, ("missing",))[0])
        for name, version in pins(INPUTS[lock_name]).items()
        if lock.get(name, ("missing",))[0] != version
    }

    assert drifted == {}, f"run `make lock`: {drifted}"


@pytest.mark.parametrize("lock_name", INPUTS)
def test_the_lock_holds_as_direct_requirements_only_what_the_inputs_pin(lock_name):
    """A pin taken out of requirements*.txt leaves the lock too (uv marks each direct one ``-r``)."""
    inputs = set(re.findall(r"^-r (\S+)", (REPO / INPUTS[lock_name]).read_text(), re.M))
    inputs.add(INPUTS[lock_name])
    direct = {
        name
        for name, (_, rest) in locked(lock_name).items()
        if any(re.search(rf"#\s+(via )?-r {re.escape(source)}$", rest, re.M) for source in inputs)
    }

    assert direct == set(pins(INPUTS[lock_name])), "run `make lock`"


@pytest.mark.parametrize("lock_name", INPUTS)
def test_every_locked_package_carries_its_hashes(lock_name):
    lock = locked(lock_name)

    assert len(lock) > len(pins(INPUTS[lock_name]))  # the indirect ones are there too
    assert [name for name, (_, rest) in lock.items() if "--hash=sha256:" not in rest] == []


def test_the_tests_run_the_versions_the_image_installs():
    runtime, development = locked("requirements.lock"), locked("requirements-dev.lock")

    assert {
        name: (version, development.get(name, ("missing",))[0])
        for name, (version, _) in runtime.items()
        if development.get(name, ("missing",))[0] != version
    } == {}


def imported_top_level_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_every_package_the_code_imports_is_pinned_by_name():
    """An import served only by another package's dependency (numpy through matplotlib) would
    change version, or vanish, when that package moves: each one is pinned in requirements*.txt."""
    local = {path.name for path in REPO.iterdir() if path.is_dir()} | {"manage"}
    sources = [*REPO.glob("*.py")] + [
        path
        for folder in sorted(REPO.iterdir())
        if folder.is_dir() and folder.name not in {".venv", ".git", "var"}
        for path in folder.rglob("*.py")
    ]
    imported = set().union(*(imported_top_level_modules(path) for path in sources))
    third_party = imported - set(sys.stdlib_module_names) - local - {"__future__"}
    distributions = packages_distributions()
    pinned = set(pins("requirements-dev.txt"))

    unpinned = {
        module: distributions.get(module, ["not installed"])
        for module in sorted(third_party)
        if not {canonical(name) for name in distributions.get(module, [])} & pinned
    }

    assert unpinned == {}
