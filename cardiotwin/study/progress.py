"""The progress callback every long study step takes (the CLI and app decide how to show it)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "no_progress"]

Progress = Callable[[float, str], None]
"""Progress callback: fraction done in [0, 1] and a short message."""


def no_progress(_fraction: float, _message: str) -> None:
    """A :data:`Progress` that shows nothing."""
