"""The one exception type of :mod:`unet_core.data`.

Every problem with files on disk (missing, unreadable, truncated, wrong size or mode, an image
without its mask, an empty folder) raises :class:`DataError`, whose message names the file and
says what was expected. Bad *arguments* (an unknown split or data-set name) raise a plain
``ValueError`` listing the valid choices; ``DataError`` is a ``ValueError`` too, so one
``except ValueError`` catches both.

Every chapter's data loading raises it; no chapter of its own.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file or folder is missing, unreadable or inconsistent with its layout."""
