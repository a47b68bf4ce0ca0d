"""The project's own errors: one base class, so the CLI prints them as one clear line and shows any
other exception (a bug, in stylepipe or a library) with its traceback."""

from __future__ import annotations


class StylepipeError(Exception):
    """An error the user can act on: the message names the file, key or value and what was expected."""


class InputError(StylepipeError, ValueError):
    """A file, option or value the user gave cannot be used."""


class MissingInputError(StylepipeError, FileNotFoundError):
    """A file or folder a stage needs is not there (usually: an earlier stage has not run yet)."""
