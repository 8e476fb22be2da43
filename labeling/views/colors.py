"""One colour per class for the project's life, the same in every colour mode and every round.

A class's colour follows its id (classes are numbered in creation order and never renumbered), so adding,
renaming or merging classes moves no other class's colour, and "Label" and "Pseudo-label" colour a class
alike. Items without a value are a pale, see-through grey that no class colour comes near, drawn under the
rest.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#000080", "#e6ab02", "#66a61e", "#a6761d", "#b15928", "#6a3d9a", "#fb9a99", "#1b9e77", "#a6cee3",
    "#f0027f", "#fdbf6f",
)
"""Twenty colours that tell apart on a white page, none of them grey (the colour of "no value")."""

NONE_COLOR = "rgba(150, 150, 150, 0.35)"
"""Items with no label (or no suggestion, no annotator): pale grey, drawn first, under the labeled ones."""


def class_color(class_id: int) -> str:
    """The colour of the class with this id, for the project's life."""
    return PALETTE[(int(class_id) - 1) % len(PALETTE)]


def name_color(name: str) -> str:
    """A colour for a name that has no id (an annotator): the same name always gets the same colour."""
    return PALETTE[zlib.crc32(str(name).encode("utf-8")) % len(PALETTE)]


def category_colors(categories: Iterable[str], class_ids: Mapping[str, int], *, none: str,
                    by_class: bool = True) -> dict[str, str]:
    """``category -> colour`` for the map's traces, in drawing order: ``none`` first (under the rest),
    then classes in creation order (or names in alphabetical order when ``by_class`` is False)."""
    cats = set(categories)
    order = sorted(cats - {none}, key=lambda c: (class_ids.get(c, 10**9), c) if by_class else c)
    out = {none: NONE_COLOR} if none in cats else {}
    for c in order:
        out[c] = class_color(class_ids[c]) if by_class and c in class_ids else name_color(c)
    return out
