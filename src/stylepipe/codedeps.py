"""The code a stage runs: the transitive import closure, within stylepipe, of the modules its command imports.

DVC and Snakemake re-run a stage when one of its declared code dependencies changes, and a training
checkpoint is reused only by the code that wrote it; both follow this closure (grimp builds the import
graph from the sources, without importing them). A stage's command is `stylepipe <stage>`: its roots are
what cli.py imports at module level plus the module of the stage's function in stylepipe.stagetable.
cli.py and the table are argument parsing and dispatch and are left out, so a new subcommand or stage
re-runs nothing. `python -m stylepipe.codedeps` prints every stage's list as dvc.yaml declares it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import grimp

from stylepipe.core.io import file_digest

PACKAGE = "stylepipe"
CLI_MODULE = f"{PACKAGE}.cli"
TABLE_MODULE = f"{PACKAGE}.stagetable"


@functools.cache
def import_graph() -> grimp.ImportGraph:
    """The package's import graph (imports inside functions included), built once per process."""
    return grimp.build_graph(PACKAGE, cache_dir=None)


def module_path(module: str) -> Path:
    """The source file of a stylepipe module (a package's __init__.py for a package)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{module}: no source file found")
    return Path(spec.origin)


def closure(roots: Iterable[str]) -> set[str]:
    """`roots`, every stylepipe module they import directly or indirectly, and the packages holding them
    (whose __init__ runs first)."""
    graph = import_graph()
    modules: set[str] = set()
    for root in roots:
        modules |= {root, *graph.find_upstream_modules(root)}
    parents = {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 1)}
    return modules | parents


def repo_paths(modules: Iterable[str]) -> list[str]:
    """Source files of `modules` relative to the repository root (src/stylepipe/...), sorted."""
    source_root = module_path(PACKAGE).parent.parent
    return sorted(f"src/{module_path(m).relative_to(source_root).as_posix()}" for m in modules)


def code_digest(roots: Iterable[str]) -> str:
    """A hash of the source files of closure(roots): it changes when any code they run changes."""
    source_root = module_path(PACKAGE).parent.parent
    h = hashlib.sha256()
    for module in sorted(closure(roots)):
        path = module_path(module)
        h.update(f"{path.relative_to(source_root).as_posix()}:{file_digest(path)}\n".encode())
    return h.hexdigest()[:16]


def _imported_modules(node: ast.AST, known: set[str]) -> set[str]:
    """stylepipe modules imported anywhere inside `node` (`from stylepipe.core import paths` -> stylepipe.core.paths)."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
            names = [f"{sub.module}.{alias.name}" for alias in sub.names]
            found |= {n for n in names if n in known} or {sub.module}
        elif isinstance(sub, ast.Import):
            found |= {alias.name for alias in sub.names}
    return {m for m in found if m == PACKAGE or m.startswith(f"{PACKAGE}.")}


def stage_table() -> ModuleType:
    """stylepipe.stagetable, imported by name: a static import would put the table into the closure of
    every module that imports this one (the training loop), so editing the table would re-run training
    and set aside its checkpoints."""
    return importlib.import_module(TABLE_MODULE)


def stages() -> list[str]:
    """The pipeline's stage names, in the table's order."""
    return list(stage_table().STAGE_NAMES)


def cli_imports() -> set[str]:
    """The stylepipe modules `stylepipe` imports before it dispatches (cli.py's module-level imports; cli.py
    is read, not imported, for the reason stage_table gives), the stage table left out."""
    tree = ast.parse(module_path(CLI_MODULE).read_text())
    known = set(import_graph().modules)
    roots: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            roots |= _imported_modules(node, known)
    return roots - {TABLE_MODULE}


def stage_roots(stage: str) -> set[str]:
    """The modules `stylepipe <stage>` imports: the CLI's own and the module of the stage's function."""
    return cli_imports() | {stage_table().stage_named(stage).module}


def stage_code(stage: str) -> list[str]:
    """The source files `stylepipe <stage>` runs, as dvc.yaml and workflow/ list them."""
    return repo_paths(closure(stage_roots(stage)))


def main() -> None:
    for stage in stages():
        print(f"{stage}:")
        for path in stage_code(stage):
            print(f"  - {path}")


if __name__ == "__main__":
    main()
