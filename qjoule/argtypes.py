"""Command-line values checked with the one-line errors the CLI promises."""

from __future__ import annotations

from .errors import UserError


def integer(text: str, flag: str, minimum: int) -> int:
    """`text` as an integer >= `minimum`, else a UserError naming the flag and the value."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UserError(f"{flag} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise UserError(f"{flag} must be an integer >= {minimum}, got {text!r}")
    return value
