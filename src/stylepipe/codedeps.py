"""The code a stage runs: the transitive import closure, within stylepipe, of the modules its command imports.

DVC and Snakemake re-run a stage when one of its declared code dependencies changes, and a training
checkpoint is reused only by the code that wrote it; both follow this closure (grimp builds the import
graph from the sources, without importing them). A stage's command is `stylepipe <stage>`: its roots are
what cli.py imports at module level plus the module of the stage's function in stylepipe.stagetable.
cli.py and the table are argument parsing and dispatch and are left out, so a new subcommand or stage
re-runs nothing. `python -m stylepipe.codedeps` prints every stage's list as dvc.yaml declares it, and
`--write` rewrites those lists in dvc.yaml and workflow/rules/*.smk.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

from stylepipe.core.code import PACKAGE, closure, import_graph, module_path

CLI_MODULE = f"{PACKAGE}.cli"
TABLE_MODULE = f"{PACKAGE}.stagetable"


def repo_paths(modules: Iterable[str]) -> list[str]:
    """Source files of `modules` relative to the repository root (src/stylepipe/...), sorted."""
    source_root = module_path(PACKAGE).parent.parent
    return sorted(f"src/{module_path(m).relative_to(source_root).as_posix()}" for m in modules)


def _imported_modules(node: ast.AST, known: set[str]) -> set[str]:
    """stylepipe modules imported anywhere inside `node`
    (`from stylepipe.core import paths` -> stylepipe.core.paths)."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
            names = [f"{sub.module}.{alias.name}" for alias in sub.names]
            found |= {n for n in names if n in known} or {sub.module}
        elif isinstance(sub, ast.Import):
            found |= {alias.name for alias in sub.names}
    return {m for m in found if m == PACKAGE or m.startswith(f"{PACKAGE}.")}


def stage_table() -> ModuleType:
    """stylepipe.stagetable, imported by name when it is read: no module's import edge then leads to the
    table, so it stays out of every closure computed from the import graph, whatever comes to import this
    module (no stage does)."""
    return importlib.import_module(TABLE_MODULE)


def stages() -> list[str]:
    """The pipeline's stage names, in the table's order."""
    return list(stage_table().STAGE_NAMES)


def cli_imports() -> set[str]:
    """The stylepipe modules `stylepipe` imports before it dispatches (cli.py's module-level imports, read from its
    source: importing cli.py would run its imports in this process), the stage table left out."""
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


DVC_DEP = re.compile(r"^\s+- src/stylepipe/")
SMK_DEP = re.compile(r'^\s+"src/stylepipe/')


def replace_deps(lines: list[str], header: str, dep: re.Pattern[str], line: Callable[[str, str], str],
                 code: list[str]) -> list[str]:
    """`lines` with the run of code-dep lines that follows `header` replaced by one `line(indent, path)`
    per path of `code`; a ValueError when that section has no code-dep line (nothing to anchor on)."""
    start = lines.index(header)
    first = next((i for i in range(start, len(lines)) if dep.match(lines[i])), None)
    if first is None:
        raise ValueError(f"{header.strip().rstrip(':')}: no src/stylepipe/ dependency line to replace")
    end = first
    while end < len(lines) and dep.match(lines[end]):
        end += 1
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    return lines[:first] + [line(indent, path) for path in code] + lines[end:]


def write_deps(root: Path) -> list[Path]:
    """Rewrite every stage's src/stylepipe code deps in `root`'s dvc.yaml and workflow/rules/*.smk to
    stage_code; returns the files that changed."""
    code = {stage: stage_code(stage) for stage in stages()}
    edits = [(root / "dvc.yaml", "  {}:", DVC_DEP, lambda indent, path: f"{indent}- {path}")]
    edits += [(smk, "rule {}:", SMK_DEP, lambda indent, path: f'{indent}"{path}",')
              for smk in sorted((root / "workflow/rules").glob("*.smk"))]
    changed = []
    for path, header, dep, line in edits:
        text = path.read_text()
        lines = text.splitlines()
        for stage, paths in code.items():
            if header.format(stage) in lines:
                lines = replace_deps(lines, header.format(stage), dep, line, paths)
        new = "\n".join(lines) + "\n"
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stylepipe.codedeps", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite the code deps in dvc.yaml and workflow/rules/*.smk (run in the repository root)")
    if parser.parse_args(argv).write:
        for path in write_deps(Path.cwd()):
            print(f"rewrote {path}")
        return
    for stage in stages():
        print(f"{stage}:")
        for path in stage_code(stage):
            print(f"  - {path}")


if __name__ == "__main__":
    main()
