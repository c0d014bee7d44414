"""The house rules of ARCHITECTURE.md, read from the source (every import, lazy ones too):
ddrsa/ imports nothing from flows/, reports/, deployments/ or the orchestration libraries;
reports/ nothing from flows/ or deployments/; no import circle among the modules of ddrsa/,
reports/, flows/ and deployments/ (each alone and all together); no module imports another
module's private name; no file in flows/ (thin wiring, one job each) over FLOWS_MAX_LINES lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORCHESTRATION = ("prefect", "prefect_dask", "dask", "distributed")
PACKAGES = ("ddrsa", "reports", "flows", "deployments")
FLOWS_MAX_LINES = 250


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, text: str | None = None) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement in the file (or `text`
    read as if it were that file)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [a.name for a in node.names]))
    return out


def _files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _graph(*packages: str) -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in _files(*packages)}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for target, names in _imports(p):
            for cand in [target] + [f"{target}.{n}" for n in names]:
                if cand in mods and cand != m:
                    graph[m].add(cand)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("ddrsa", ("flows", "reports", "deployments", *ORCHESTRATION)),
        ("reports", ("flows", "deployments")),
    ],
)
def test_lower_layers_never_import_upward(package, forbidden):
    bad = [
        f"{p.relative_to(ROOT)} imports {target}"
        for p in _files(package)
        for target, _ in _imports(p)
        if target.split(".")[0] in forbidden
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("packages", [("ddrsa",), ("reports",), ("flows",), ("deployments",), PACKAGES])
def test_no_import_circle(packages):
    # package __init__ files re-export their modules, which is not a circle of jobs
    graph = {
        m: {n for n in deps if not (m.startswith(n + ".") or n.startswith(m + "."))}
        for m, deps in _graph(*packages).items()
    }
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_module_imports_another_modules_private_name():
    bad = [
        f"{p.relative_to(ROOT)}: from {target} import {name}"
        for p in _files(*PACKAGES)
        for target, names in _imports(p)
        if target.split(".")[0] in PACKAGES
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_planted_circle_and_a_relative_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    seeding = ROOT / "ddrsa" / "models" / "seeding.py"
    assert _imports(seeding, "def f():\n    from .decoder import HazardDecoder\n") == [
        ("ddrsa.models.decoder", ["HazardDecoder"])
    ]


def test_no_flows_file_over_the_line_limit():
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _files("flows")
        if (n := len(p.read_text().splitlines())) > FLOWS_MAX_LINES
    ]
    assert not long, "\n".join(long)
