"""Exception hierarchy of soxs-mflat.

Every error the package raises derives from :class:`SoxsMflatError`; the input errors also
derive from ``ValueError`` so that generic callers can still catch them.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


class SoxsMflatError(Exception):
    """Base class of all soxs-mflat errors."""


class InputError(SoxsMflatError, ValueError):
    """Input data or parameters are unusable (shape, type, missing calibration, ...)."""


class ProcessingError(SoxsMflatError, RuntimeError):
    """A processing step failed on otherwise valid input (e.g. no order edges found)."""


@contextlib.contextmanager
def convert_cpp_errors(context: str = "") -> Iterator[None]:
    """Re-raise the core's ValueError/RuntimeError as package errors, prefixed by context."""
    prefix = f"{context}: " if context else ""
    try:
        yield
    except SoxsMflatError:
        raise
    except ValueError as exc:
        raise InputError(prefix + str(exc)) from exc
    except RuntimeError as exc:
        raise ProcessingError(prefix + str(exc)) from exc
