"""Errors in what the user gave us (files, records, tokenizer folders), as opposed to bugs of ours.

Their message already says what is wrong and where (file, line, field), so the `streamguard` command
prints it as one line and exits 2 instead of a traceback from deep inside Lightning.
"""
from __future__ import annotations


class InputError(Exception):
    """Bad or missing user input; the message names the file (and line and field when known)."""


class InputNotFoundError(InputError, FileNotFoundError):
    """A data file, folder or input path that does not exist."""


class OptionError(InputError, ValueError):
    """An option that cannot work with the data it was given (e.g. a group field no record has)."""
