"""Map colours: one per class for the project's life, whatever the mode, the round or the classes added."""
from __future__ import annotations

import re

from labeling.views.colors import NONE_COLOR, PALETTE, category_colors, class_color, name_color


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[k:k + 2], 16) for k in (1, 3, 5))


def test_a_class_keeps_its_colour_when_classes_are_added_and_in_every_mode():
    ids = {"bear": 1, "cat": 3, "zebra": 10}
    before = category_colors(["cat", "zebra", "(none)"], ids, none="(none)")
    after = category_colors(["aardvark", "cat", "zebra", "(none)", "bear"], {**ids, "aardvark": 11}, none="(none)")
    assert before["cat"] == after["cat"] == class_color(3)
    assert before["zebra"] == after["zebra"] == class_color(10)
    assert category_colors(["zebra"], ids, none="(none)")["zebra"] == class_color(10)  # another round, fewer classes


def test_unlabeled_items_are_drawn_first_in_a_grey_no_class_comes_near():
    colours = category_colors(["zebra", "(none)", "bear"], {"bear": 1, "zebra": 10}, none="(none)")
    assert list(colours) == ["(none)", "bear", "zebra"]  # drawing order: creation order after "no value"
    assert colours["(none)"] == NONE_COLOR
    for colour in PALETTE:  # no palette colour is a grey: its channels differ by more than 40
        r, g, b = _rgb(colour)
        assert max(r, g, b) - min(r, g, b) > 40, colour
    assert len(set(PALETTE)) == len(PALETTE) and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in PALETTE)
    assert class_color(1) != class_color(10) and class_color(1) == class_color(1 + len(PALETTE))


def test_annotators_keep_their_colour_whoever_else_labels():
    alone = category_colors(["ann"], {}, none="(none)", by_class=False)
    together = category_colors(["bob", "ann", "(none)"], {}, none="(none)", by_class=False)
    assert alone["ann"] == together["ann"] == name_color("ann")
    assert list(together) == ["(none)", "ann", "bob"]
