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

    def text(exc: BaseException) -> str:   # the core names its function itself: no "f: f: ..."
        msg = str(exc)
        return msg if not prefix or msg.startswith(prefix) else prefix + msg
    try:
        yield
    except SoxsMflatError:
        raise
    except (ValueError, TypeError) as exc:   # TypeError: an argument pybind11 cannot convert
        raise InputError(text(exc)) from exc
    except RuntimeError as exc:
        if "Unable to cast" in str(exc):     # pybind11's cast_error: a value of the wrong type
            raise InputError(f"{prefix}an argument has the wrong type ({str(exc).split(' (#define')[0]})") from exc
        raise ProcessingError(text(exc)) from exc
