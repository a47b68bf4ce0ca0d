"""The package's own source code: its import graph and a digest of what a set of modules runs.

grimp builds the import graph from the sources, without importing them; a training checkpoint records
the digest of its stage's closure, so it is resumed only by the code that wrote it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path

import grimp

from stylepipe.core.io import file_digest

PACKAGE = "stylepipe"


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


def code_digest(roots: Iterable[str]) -> str:
    """A hash of the source files of closure(roots): it changes when any code they run changes."""
    source_root = module_path(PACKAGE).parent.parent
    h = hashlib.sha256()
    for module in sorted(closure(roots)):
        path = module_path(module)
        h.update(f"{path.relative_to(source_root).as_posix()}:{file_digest(path)}\n".encode())
    return h.hexdigest()[:16]
