"""The Label page's neighbourhood strip as one piece of HTML: a dozen thumbnails and their captions.

Drawn as a dozen ``st.image`` calls, a neighbourhood is some thirty page elements and a dozen image
requests on every key press; as one HTML block it is one element whose thumbnails travel inline (a
few kilobytes each). Every name in it (class names are typed by people) is escaped, so nothing a
person types is ever interpreted as markup.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from labeling.results import Neighbour

STRIP_CSS = ("display:grid;grid-template-columns:repeat({cols},minmax(0,1fr));gap:0.5rem;"
             "font-size:0.8rem;line-height:1.2")
MISSING = ("data:image/svg+xml;base64,"
           + base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                              b'<rect width="64" height="64" fill="#ddd"/></svg>').decode())
"""A grey square where a thumbnail file is missing (a pruned cache): the strip still shows the rest."""


@lru_cache(maxsize=4_096)
def _data_uri(path: str, stamp: tuple[int, int]) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    kind = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def thumb_uri(path: str | Path) -> str:
    """The thumbnail file as a ``data:`` URI (cached per file and modification), or a grey square."""
    try:
        st = Path(path).stat()
    except OSError:
        return MISSING
    try:
        return _data_uri(str(path), (st.st_mtime_ns, st.st_size))
    except OSError:
        return MISSING


def caption(n: Neighbour, candidates: Iterable[int]) -> str:
    """``0.93 · cat ✓``: similarity, the human label (or ``suggestion?``, or ``—``), and a tick for the
    items that "accept the neighbourhood" would label too. Plain text (escape it for HTML)."""
    shown = n.label or (f"{n.pseudo_label}?" if n.pseudo_label else "—")
    mark = " ✓" if n.item_id in set(candidates) else ""
    return f"{n.similarity:.2f} · {shown}{mark}"


RELEASE_FOCUS_HTML = "<script>document.activeElement && document.activeElement.blur();</script>"
"""A fixed script (no data in it) the Label page runs once after a class is added from the text box:
the box keeps the keyboard focus otherwise, and the next digit key would type into it instead of
labeling the next item."""


def neighbour_strip_html(neighbours: Sequence[Neighbour], candidates: Iterable[int], *, columns: int = 6) -> str:
    """One HTML block: the neighbours in a grid of ``columns``, each thumbnail above its caption."""
    chosen = set(int(c) for c in candidates)
    cells = []
    for n in neighbours:
        text = html.escape(caption(n, chosen))
        cells.append(f'<figure style="margin:0" title="{html.escape(n.uri)}">'
                     f'<img src="{thumb_uri(n.thumb)}" alt="{text}" style="width:100%;border-radius:4px">'
                     f'<figcaption style="text-align:center;opacity:0.7">{text}</figcaption></figure>')
    return f'<div class="quorum-neighbours" style="{STRIP_CSS.format(cols=int(columns))}">{"".join(cells)}</div>'


CLASS_KEYS = "1234567890qwetyuiopdghjklxvbm"
"""The keys that label with a class, in order: the digits, then letters the Label page and the browser
leave free (not A, S, N, F: accept the neighbourhood, skip, next, full-size view; not Z: undo; not C, R:
the framework's own). Twenty-nine classes have a key; every class past them stays reachable through the
type-ahead box."""


def class_keys(names: Sequence[str]) -> list[tuple[str | None, str]]:
    """``(key, name)`` for every class, in the order given (the project's creation order, so a class keeps
    its key when classes are added); ``None`` for the classes past :data:`CLASS_KEYS`."""
    return [(CLASS_KEYS[k] if k < len(CLASS_KEYS) else None, name) for k, name in enumerate(names)]


def key_label(key: str) -> str:
    """How a key reads on a button: digits as they are, letters in capitals."""
    return key.upper()


def card_is_stale(card_round: int | None, newest_round: int | None, refreshed_for: int | None) -> bool:
    """Whether the Label page should redraw its pinned card because a newer round landed: the card shows
    ``card_round``'s suggestion, ``newest_round`` is in use now, and ``refreshed_for`` is the round a
    redraw was last asked for (once per round, so a card that cannot catch up never loops)."""
    return newest_round is not None and newest_round != card_round and newest_round != refreshed_for


def card_signature(card) -> tuple:
    """What a new round can change on a card that a person acts on: the suggestion, and the class each
    imported model (or zero-shot) suggests. Confidences and member votes move a little every round and
    are left out (a redraw for them would redraw every page after every round)."""
    return (card.pseudo_label, tuple((model, cls) for model, cls, _p in card.models))


def card_needs_redraw(card_round: int | None, shown: tuple, newest_round: int | None,
                      refreshed_for: int | None, now: Callable[[], tuple]) -> bool:
    """Whether a newer round changes what the pinned card tells the person: the redraw is asked for only
    when the card's :func:`card_signature` in the newest round (``now`` reads it, and is called only once
    the card is stale: :func:`card_is_stale`) differs from the one shown (``shown``), or the card had no
    round at all. A round that changes neither leaves the card, and every session's page, alone: early
    rounds land every few seconds, and a whole-page redraw per session per round competed with the key
    presses of every session. The card still names the round it shows (its votes line), and a label
    records that round."""
    if not card_is_stale(card_round, newest_round, refreshed_for):
        return False
    return card_round is None or now() != shown
