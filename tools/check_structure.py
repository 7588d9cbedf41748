"""The package's structure rules, checked from its source (`make lint` runs this; CI with it):

- no import cycle between the package's modules, counting imports inside functions too (a lazy import
  hides a cycle from Python, not from a reader);
- no module uses another module's private (_-prefixed) names, by `from x import _y` or `x._y`;
- no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES lines unless a comment
  `# long: <why>` stands on its `def` line or the line above.

Prints every breach with file:line and exits 1 if there is any; `--sizes` prints the largest modules and
functions as well.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "airflow_provider_maxwell"
ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_MARK = "# long:"


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: list[str]
    imports: dict[str, int] = field(default_factory=dict)  # imported package module -> first line


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_modules(root: Path) -> dict[str, Module]:
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        text = path.read_text()
        name = module_name(path, root)
        modules[name] = Module(name, path, ast.parse(text), text.splitlines())
    return modules


def resolve(module: Module, node: ast.ImportFrom) -> str:
    """The absolute name an ImportFrom imports from."""
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    is_package = module.path.name == "__init__.py"
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def package_module(name: str, modules: dict[str, Module]) -> str | None:
    """The package module `name` is, or lies in (an attribute import: `from pkg.mod import Name`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def private_breaches(module: Module, modules: dict[str, Module]) -> list[str]:
    breaches = []
    aliases: dict[str, str] = {}  # local name -> package module it stands for
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = package_module(alias.name, modules)
                if target is not None and alias.name == target:
                    aliases[alias.asname or alias.name.split(".")[0]] = target
                    if target != module.name:
                        module.imports.setdefault(target, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = resolve(module, node)
            target = package_module(source, modules)
            if target is None:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # `from pkg import module`
                    aliases[alias.asname or alias.name] = submodule
                    if submodule != module.name:
                        module.imports.setdefault(submodule, node.lineno)
                    continue
                if target != module.name:
                    module.imports.setdefault(target, node.lineno)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        breaches.append(f"{module.path}:{node.lineno}: imports {target}'s private name {alias.name}")
    for node in ast.walk(module.tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != module.name
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            breaches.append(f"{module.path}:{node.lineno}: uses {aliases[node.value.id]}'s private name {node.attr}")
    return breaches


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Every cycle of the import graph, each once (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in modules[name].imports:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == name:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in modules:
        if name not in index:
            visit(name)
    return found


def is_marked_long(module: Module, node: ast.AST) -> bool:
    line = node.lineno  # type: ignore[attr-defined]
    around = module.lines[max(0, line - 2) : line]
    return any(LONG_MARK in text for text in around)


def size_breaches(module: Module) -> tuple[list[str], list[tuple[int, str]]]:
    breaches = []
    sizes = []
    if len(module.lines) > MAX_MODULE_LINES:
        breaches.append(f"{module.path}:1: {len(module.lines)} lines, more than {MAX_MODULE_LINES}")
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            sizes.append((length, f"{module.path}:{node.lineno} {node.name}"))
            if length > MAX_FUNCTION_LINES and not is_marked_long(module, node):
                breaches.append(
                    f"{module.path}:{node.lineno}: {node.name} is {length} lines, more than {MAX_FUNCTION_LINES} "
                    f"(shorten it, or say why beside its def: `{LONG_MARK} <why>`)"
                )
    return breaches, sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", action="store_true", help="also print the largest modules and functions")
    parser.add_argument("--root", type=Path, default=ROOT, help=f"the folder that holds {PACKAGE}/")
    args = parser.parse_args()
    modules = load_modules(args.root)
    breaches = []
    all_sizes: list[tuple[int, str]] = []
    for module in modules.values():
        breaches += private_breaches(module, modules)
        found, sizes = size_breaches(module)
        breaches += found
        all_sizes += sizes
    for cycle in cycles(modules):
        breaches.append(f"import cycle: {' <-> '.join(cycle)}")
    if args.sizes:
        print("largest modules:")
        for module in sorted(modules.values(), key=lambda m: -len(m.lines))[:8]:
            print(f"  {len(module.lines):4d} {module.path}")
        print("longest functions:")
        for length, where in sorted(all_sizes, reverse=True)[:10]:
            print(f"  {length:4d} {where}")
    for breach in breaches:
        print(breach)
    print(f"check_structure: {len(modules)} modules, {len(breaches)} breach(es)")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
