"""Errors a user can fix, and what they carry; importing this costs nothing (no torch)."""

from __future__ import annotations


class UserError(RuntimeError):
    """An error the user can fix (missing data, bad input); printed as one line, no traceback."""


class NotRegularFileError(ValueError):
    """A path that is not a regular file: a folder, FIFO, socket, device (or a symlink, when not followed)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"not a regular file ({kind})")
        self.kind = kind  # "a FIFO", "a symbolic link", ...
