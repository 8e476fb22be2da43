"""The neighbourhood strip: one HTML block, thumbnails inline, every typed name escaped."""
from __future__ import annotations

import base64
import re

from PIL import Image

from labeling.results import Neighbour
from labeling.views.cards import MISSING, caption, neighbour_strip_html, thumb_uri


def _thumb(path, colour):
    Image.new("RGB", (8, 8), colour).save(path, "JPEG")
    return str(path)


def test_strip_inlines_each_thumbnail_and_marks_the_candidates(tmp_path):
    a = Neighbour(1, "img/a.png", 0.95, _thumb(tmp_path / "a.jpg", "red"), None, "cat", 0.9)
    b = Neighbour(2, "img/b.png", 0.81, _thumb(tmp_path / "b.jpg", "blue"), "dog", None, None)
    c = Neighbour(3, "img/c.png", 0.40, str(tmp_path / "gone.jpg"), None, None, None)
    out = neighbour_strip_html([a, b, c], candidates=[1])
    srcs = re.findall(r'<img src="([^"]+)"', out)
    assert len(srcs) == 3
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == (tmp_path / "a.jpg").read_bytes()
    assert srcs[0].startswith("data:image/jpeg;base64,") and srcs[2] == MISSING  # a pruned thumbnail: grey
    captions = re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", out)
    assert captions == ["0.95 · cat? ✓", "0.81 · dog", "0.40 · —"]
    assert "repeat(6," in out


def test_names_people_typed_are_never_markup(tmp_path):
    evil = '<img src=x onerror="alert(1)">'
    n = Neighbour(1, 'x"><script>alert(2)</script>.png', 0.9, _thumb(tmp_path / "a.jpg", "red"), evil, None, None)
    out = neighbour_strip_html([n], candidates=[])
    assert "<script>" not in out and "onerror=\"alert" not in out
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in out
    assert caption(n, []) == f"0.90 · {evil}"  # plain text before escaping


def test_a_changed_thumbnail_is_read_again(tmp_path):
    path = _thumb(tmp_path / "a.jpg", "red")
    first = thumb_uri(path)
    Image.new("RGB", (16, 16), "green").save(path, "PNG")
    second = thumb_uri(path)
    assert first != second and second.startswith("data:image/png;base64,")


def test_class_keys_follow_creation_order_so_adding_a_class_moves_no_key():
    from labeling.views.cards import class_keys

    before = dict((name, key) for key, name in class_keys(["zebra", "cat", "mole"]))
    after = dict((name, key) for key, name in class_keys(["zebra", "cat", "mole", "aardvark"]))
    assert before == {"zebra": "1", "cat": "2", "mole": "3"}
    assert {n: after[n] for n in before} == before and after["aardvark"] == "4"


def test_twenty_nine_classes_have_distinct_keys_the_framework_accepts_and_none_the_page_uses():
    from streamlit.elements.lib.shortcut_utils import normalize_shortcut

    from labeling.views.cards import CLASS_KEYS, class_keys, key_label

    keys = class_keys([f"c{k}" for k in range(32)])
    assert [k for k, _ in keys[:10]] == list("1234567890")
    assert keys[10] == ("q", "c10") and keys[28][0] is not None and keys[29] == (None, "c29")
    assert len(set(CLASS_KEYS)) == len(CLASS_KEYS) == 29
    assert not set(CLASS_KEYS) & set("asnfzcr")  # neighbourhood, skip, next, full size, undo; the framework's C, R
    assert all(normalize_shortcut(k) == k for k in CLASS_KEYS)
    assert key_label("q") == "Q" and key_label("0") == "0"


def test_a_card_is_redrawn_once_per_newer_round():
    from labeling.views.cards import card_is_stale

    assert card_is_stale(None, 3, None)  # "No suggestion yet" while round 3 is in use
    assert card_is_stale(2, 3, None)
    assert not card_is_stale(3, 3, None)
    assert not card_is_stale(2, 3, 3)  # asked once for round 3 already: no loop
    assert card_is_stale(2, 4, 3)
    assert not card_is_stale(None, None, None)


def test_card_redraws_only_when_the_newest_round_changes_what_it_tells():
    from labeling.results import ItemCard
    from labeling.views.cards import card_needs_redraw, card_signature

    asked = []

    def now(suggestion, models=()):
        def read():
            asked.append(suggestion)
            return card_signature(ItemCard(item_id=1, uri="a.png", path="a.png", width=None, height=None, pseudo_label=suggestion,
                                           models=list(models)))
        return read

    shown = card_signature(ItemCard(item_id=1, uri="a.png", path="a.png", width=None, height=None, pseudo_label="cat"))
    assert card_needs_redraw(None, card_signature(ItemCard(item_id=1, uri="a.png", path="a.png", width=None, height=None)), 3, None,
                             now("cat"))  # "No suggestion yet": always redrawn
    assert card_needs_redraw(2, shown, 3, None, now("dog"))  # round 3 suggests another class
    assert not card_needs_redraw(2, shown, 3, None, now("cat"))  # same suggestion: the card is left alone
    # an imported model's suggestion is new on the card: redrawn, though the blend still says cat
    assert card_needs_redraw(2, shown, 3, None, now("cat", [("resnet-preds", "cat", 0.82)]))
    asked.clear()
    assert not card_needs_redraw(3, shown, 3, None, now("dog"))  # not stale: the round is not even read
    assert not card_needs_redraw(2, shown, 3, 3, now("dog"))  # already looked at for round 3
    assert asked == []
