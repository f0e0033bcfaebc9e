"""The layout rules no tool checks: module size, a test module mirroring every library module, and
no reference to files outside the repository. (Formatting, lint and import directions are checked
by ruff and import-linter in .ci/run; see pyproject.toml.)"""

import ast
import importlib.metadata
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ("rl", "models", "rewards", "launch")
MAX_LINES = 500


def _tracked(*patterns: str) -> list[pathlib.Path]:
    out = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.split()]


def _modules() -> list[pathlib.Path]:
    found = [p for p in ROOT.glob("*/**/*.py") if p.relative_to(ROOT).parts[0] in LIBRARY]
    return sorted(p for p in found if ".venv" not in p.parts and p.name != "__init__.py")


def test_the_library_is_found():
    names = {str(p.relative_to(ROOT)) for p in _modules()}
    assert {"rl/algo/gae.py", "rewards/shaping.py", "models/decoder.py", "rl/train.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_short_and_has_a_mirrored_test_module(path):
    rel = path.relative_to(ROOT)
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{rel}: {lines} lines; split it by role (limit {MAX_LINES})"
    test = ROOT / "tests" / rel.parent / f"test_{rel.name}"
    assert test.exists(), f"{rel}: no test module {test.relative_to(ROOT)}"
    assert "def test_" in test.read_text(), f"{test.relative_to(ROOT)} holds no test"


def test_nothing_refers_to_files_outside_the_repository():
    """Every upper-case Markdown document a tracked file names (README.md style; outputs such as
    results.md are lower-case) exists in the repository, and no tracked file names an absolute
    path of the machine it was written on."""
    names = {p.name for p in _tracked("*.md")}
    md = re.compile(r"\b([A-Z][A-Z0-9_-]*\.md)\b")
    hits = []
    for path in _tracked("*.py", "*.md", "*.sh", "*.toml", "*.txt"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            missing = [m for m in md.findall(line) if m not in names]
            machine_path = "/work/" in line and path.name != "test_layout.py"  # (the checker)
            if missing or machine_path:
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_package_the_library_imports_is_pinned_in_requirements():
    """A fresh machine installs requirements.txt only (launch/reproduce.sh): a package the
    library imports that came in with the test requirements (jinja2 did, with torch) works in
    the suite and fails there."""
    pinned = {
        _normalized(line.split("==")[0])
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    providers = importlib.metadata.packages_distributions()
    own = {"rl", "models", "rewards", "launch", "configs"}
    imported: dict[str, str] = {}
    for path in _modules() + sorted((ROOT / "configs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    imported.setdefault(top, str(path.relative_to(ROOT)))
    assert {"jax", "flax", "jinja2"} <= set(imported)
    missing = {
        top: (where, providers.get(top))
        for top, where in imported.items()
        if not any(_normalized(d) in pinned for d in providers.get(top, [top]))
    }
    assert not missing, f"imported but not pinned in requirements.txt: {missing}"
