"""Words the pages and the command line print: counts with the right plural, empty values as a dash."""
from __future__ import annotations

DASH = "—"
"""What a table cell shows for a value that is not there (never the literal ``None`` or ``nan``): every
page's tables pass it to ``st.dataframe(placeholder=...)``."""

_IRREGULAR = {"person": "people", "batch": "batches", "class": "classes"}


def count(n: int, word: str, plural: str | None = None) -> str:
    """``count(1, "item")`` → ``"1 item"``; ``count(2, "item")`` → ``"2 items"``; ``count(0, "class")`` → ``"0 classes"``."""
    if n == 1:
        return f"1 {word}"
    return f"{n:,} {plural or _IRREGULAR.get(word) or word + 's'}"


def vote_standing(tally: dict[str, int], current: str | None) -> str:
    """How people's votes on one item stand, in words: a majority says so with its count, a tie says it is
    a tie (never "majority" for 1 against 1) and which label counts until a reviewer settles it."""
    total = sum(tally.values())
    if not total:
        return "No votes yet."
    top = max(tally.values())
    leaders = sorted(c for c, n in tally.items() if n == top)
    if len(leaders) == 1:
        return f"Majority: {leaders[0]} ({top} of {total} votes)."
    tied = " · ".join(f"{c} {top}" for c in leaders)
    now = f"; {current} counts until a reviewer settles it" if current is not None else ""
    return f"Tied: {tied}{now}."
