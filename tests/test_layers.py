"""The layer rule, read from the source: no module imports a part above it (docs/architecture.md, "Parts").

Upward imports that are only for type hints are allowed under `if TYPE_CHECKING:` with a comment on that line
saying why. Nothing under bot/ or storage/ imports discord.py, slack-bolt or an adapter, except bot.cli, and
only inside a function (it starts the adapter a command names).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Bottom first. A module may import its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("bot", "bot.models", "bot.errors", "bot.actions", "bot.config", "bot.sealing", "bot.signing",
                    "bot.jwks")),
    ("storage", ("storage",)),
    ("backends", ("bot.backends",)),
    ("chat", ("bot.chat",)),
    ("characters", ("bot.characters",)),
    ("videos", ("bot.videos",)),
    ("app", ("bot.app",)),
    ("web", ("bot.web",)),
    ("cli", ("bot.cli",)),
    ("adapters", ("adapters",)),
]
PLATFORM_LIBRARIES = ("discord", "slack_bolt", "slack_sdk", "adapters")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {
    _module_name(path): path
    for top in ("bot", "storage", "adapters")
    for path in sorted((ROOT / top).rglob("*.py"))
}


def layer_of(module: str) -> int | None:
    """The index of the layer a first-party module belongs to (the longest matching prefix); None for others."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                # `bot` itself is foundation, but `bot.x` only where x is listed: longest prefix wins.
                if prefix == "bot" and module != "bot":
                    continue
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported from, and in what context."""

    importer: str
    target: str
    line: int
    type_checking: bool
    marked: bool  # the `if TYPE_CHECKING:` line carries a comment
    in_function: bool


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    # `from bot.characters import media` imports the module bot.characters.media.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in SOURCES else base for a in node.names]


def imports_of(module: str) -> list[Import]:
    """Every first-party or platform import in a module, with whether it is for type hints or in a function."""
    path = SOURCES[module]
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found: list[Import] = []

    def visit(node: ast.AST, type_checking: bool, marked: bool, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                is_marked = "#" in lines[child.lineno - 1]
                for stmt in child.body:
                    visit_one(stmt, True, is_marked, in_function)
                for stmt in child.orelse:
                    visit_one(stmt, type_checking, marked, in_function)
            else:
                visit_one(child, type_checking, marked, in_function)

    def visit_one(node: ast.AST, type_checking: bool, marked: bool, in_function: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(node, module, path.name == "__init__.py"):
                found.append(Import(module, target, node.lineno, type_checking, marked, in_function))
            return
        function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        visit(node, type_checking, marked, in_function or function)

    visit(ast.parse(source), False, False, False)
    return found


ALL_IMPORTS = [imp for module in SOURCES for imp in imports_of(module)]


def test_every_module_has_a_layer() -> None:
    unplaced = [module for module in SOURCES if layer_of(module) is None]
    assert unplaced == [], f"place these in LAYERS (and in docs/architecture.md): {unplaced}"


def test_no_module_imports_a_layer_above_it() -> None:
    upward = []
    for imp in ALL_IMPORTS:
        mine, theirs = layer_of(imp.importer), layer_of(imp.target)
        if theirs is None or mine is None or theirs <= mine:
            continue
        if imp.type_checking and imp.marked:
            continue  # a type hint only, and the block says why
        if imp.importer.startswith("bot.cli") and imp.target.startswith("adapters.") and imp.in_function:
            continue  # `soracast discord` and friends start the adapter they name
        upward.append(f"{imp.importer}:{imp.line} imports {imp.target} ({LAYERS[theirs][0]} is above "
                      f"{LAYERS[mine][0]})")
    assert upward == []


@pytest.mark.parametrize("top", ["bot", "storage"])
def test_the_core_never_imports_a_platform(top: str) -> None:
    offending = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in ALL_IMPORTS
        if (imp.importer == top or imp.importer.startswith(top + "."))
        and imp.target.split(".")[0] in PLATFORM_LIBRARIES
        and not (imp.importer.startswith("bot.cli") and imp.target.startswith("adapters.") and imp.in_function)
    ]
    assert offending == []


def test_the_checker_sees_an_upward_import() -> None:
    # The rule must be able to fail: the app (layer "app") is imported by the web layer, never the reverse.
    web_app = [imp for imp in imports_of("bot.web.web_app") if imp.target == "bot.app"]
    assert web_app and layer_of("bot.web.web_app") > layer_of("bot.app")
    cli_adapters = [imp for imp in imports_of("bot.cli") if imp.target.startswith("adapters.")]
    assert cli_adapters and all(imp.in_function for imp in cli_adapters)
