"""Argument checks shared by the package: one wording for every "not one of the choices".

Used by every module that takes a choice; no chapter of its own.
"""

from __future__ import annotations


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``name``, the bad ``value`` and the valid ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {', '.join(choices)}")
