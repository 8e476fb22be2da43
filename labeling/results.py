"""What the facade returns: small, typed records instead of dicts with keys that are sometimes missing.

Every field is always present; ``None`` says "not known yet" (no round, no suggestion, no label).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class CurrentLabel:
    """An item's live human decision: ``label`` None means skipped / unsure."""

    label: str | None
    user: str
    source: str


@dataclass(frozen=True)
class ItemCard:
    """Everything the Label page shows about one item."""

    item_id: int
    uri: str
    path: str
    width: int | None
    height: int | None
    round_id: int | None = None
    pseudo_label: str | None = None
    """The round's suggestion (its weighted mean's top class), None before two classes have labels."""
    confidence: float | None = None
    hint: tuple[str, float] | None = None
    """The backbone's own ImageNet guess and its probability, before any suggestion exists."""
    scores: dict[str, float] = field(default_factory=dict)
    top: list[tuple[str, float]] = field(default_factory=list)
    votes: list[tuple[str, str]] = field(default_factory=list)
    """(member name, the class it votes for) per ensemble member."""
    weights: list[float] = field(default_factory=list)
    """Each member's share of the mean that ``pseudo_label``, ``confidence`` and ``top`` read."""
    current: CurrentLabel | None = None
    models: list[tuple[str, str, float]] = field(default_factory=list)
    """(model name, the class it suggests, its probability) of each imported model that predicted this item."""
    image: str = ""
    """The file the card shows: ``path`` itself, or its preview (:mod:`labeling.data.previews`)."""
    image_format: str = "auto"
    """``image``'s format, for the image element not to convert it ("JPEG", "PNG", "GIF"; "auto" unknown)."""
    image_url: str | None = None
    """``image`` as a ``data:`` URL when it is small (:func:`labeling.data.previews.inline_url`), else None."""
    image_problem: str | None = None
    """Why the image cannot be shown (missing or unreadable file), in one line; None when it can."""


@dataclass(frozen=True)
class Neighbour:
    """One of an item's nearest items, with its human label or the round's suggestion."""

    item_id: int
    uri: str
    similarity: float
    thumb: str
    label: str | None
    pseudo_label: str | None
    confidence: float | None


@dataclass(frozen=True)
class GridCell:
    """An unlabeled item in grid mode: suggested as the grid's class, with that confidence."""

    item_id: int
    uri: str
    thumb: str
    confidence: float


@dataclass(frozen=True)
class RoundInfo:
    """A finished model round: its id, how many labels it saw, when it finished, its metrics."""

    id: int
    labels: int
    finished_at: datetime | None
    metrics: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict) -> "RoundInfo":
        return cls(int(row["id"]), int(row.get("n_labels") or 0), row.get("finished_at"), dict(row.get("metrics") or {}))


@dataclass
class QueueItem:
    item_id: int
    uri: str
    pseudo_label: str | None
    confidence: float
    score: float
    top: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "uri": self.uri, "pseudo_label": self.pseudo_label,
                "confidence": round(float(self.confidence), 4), "score": round(float(self.score), 4),
                "top": [{"label": n, "p": round(float(p), 4)} for n, p in self.top]}
