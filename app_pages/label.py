"""Label: the queue ranked by disagreement, the item card, its neighbourhood, grid mode."""
from __future__ import annotations

import streamlit as st

from labeling.session import (QUEUE_STRATEGIES, RELEASE_FOCUS_HTML, UnknownClass, card_signature, count, key_label,
                              neighbour_strip_html)
from app_pages.common import CARD_ROUND, CARD_WAITS_FOR_ROUND, done, get_service, get_session, get_worker, plain

session = get_session()
ss = st.session_state
ss.setdefault("passed", [])  # items this session moved past with "Next"
ss.setdefault("last_batch", None)
ss.setdefault("flash", None)

GRID_COLUMNS = 6
STRATEGY_NAMES = {"default": "Default policy", "most_confident": "Most confident first", "random": "Random"}

st.title("Label")
top = st.columns([2, 2, 1])
strategy = top[0].selectbox("Order", QUEUE_STRATEGIES, key="label_strategy",
                            format_func=lambda s: STRATEGY_NAMES.get(s, s.replace("_", " ").capitalize()))
grid_mode = top[1].toggle("Grid mode", key="label_grid_mode", help="Review many items of one suggested class at once")
with top[2].popover("Keys"):
    st.markdown("**Enter** accept · **1–9, 0**, then **Q W E T Y …** the class shown on its button · **S** skip · "
                "**N** next · **A** accept neighbourhood · **F** full size · **Ctrl+Z** undo")

classes = session.class_names()


def _jump() -> None:
    """Callback of "Jump to": pin the chosen item (labeled or not: a person may correct a label)."""
    chosen = ss.get("jump_to")
    if chosen is not None:
        ss.current_item = ss.jumped = int(chosen)
        ss.jump_to = None


with st.expander("Find and filter", expanded=bool(ss.get("find_text") or ss.get("filter_suggested")
                                                  or ss.get("browse_label") or ss.get("browse_source"))):
    ff = st.columns([3, 2, 2])
    find_text = ff[0].text_input("Find a file", key="find_text", placeholder="Part of a file name or path, or an id")
    suggested_filter = ff[1].selectbox("Queue: suggested as", classes, index=None, key="filter_suggested",
                                       placeholder="Any class")
    spread = session.disagreement_range()
    bald_range = None
    if spread is not None and spread[1] > spread[0]:
        bald_range = ff[2].slider("Queue: disagreement (BALD)", spread[0], spread[1], spread, key="filter_bald",
                                  format="%.3f")
        if tuple(bald_range) == spread:
            bald_range = None
    bb = st.columns([3, 2, 2])
    browse_label = bb[1].selectbox("Labeled as", classes, index=None, key="browse_label", placeholder="Any label")
    browse_source = bb[2].selectbox("Label source", session.label_sources(), index=None, key="browse_source",
                                    placeholder="Any source")
    text_query = ""
    if session.can_search_text():
        text_query = bb[0].text_input("Search by text", key="find_by_text", placeholder="a red car",
                                      help="Images ranked by similarity to the text (CLIP); label them as one batch "
                                           "on the Map page's 'Select by text'")
    found = []
    try:
        if find_text.strip():
            found = session.find(find_text)
        elif text_query.strip():
            found = session.find_by_text(text_query, limit=20)
        elif browse_label is not None or browse_source is not None:
            found = session.labeled(label=browse_label, source=browse_source)
    except ValueError as exc:
        st.error(str(exc))
    if find_text.strip() or text_query.strip() or browse_label is not None or browse_source is not None:
        names = {f.item_id: f"{f.uri.rsplit('/', 1)[-1]} · #{f.item_id} · {f.label or 'unlabeled'}" for f in found}
        bb[0].selectbox(f"Jump to ({count(len(found), 'match', 'matches')})", list(names), index=None,
                        key="jump_to", format_func=names.get, on_change=_jump, placeholder="Choose an item")



def _notices() -> None:
    """The last action's one-line message, and the keyboard focus handed back after "New class"."""
    if ss.flash:
        st.toast(ss.flash)
        ss.flash = None
    if ss.pop("release_focus", False):
        st.html(RELEASE_FOCUS_HTML, unsafe_allow_javascript=True)


def _record(batch: str, message: str) -> None:
    ss.last_batch = batch
    ss.flash = message
    ss.current_item = ss.jumped = None  # move on to the next item


def _undo() -> None:
    try:
        items = get_session().undo(ss.last_batch)
        ss.flash = f"Undid {count(len(items), 'label')}"
        ss.last_batch = None
        ss.current_item = None  # the undone item is back at the head of the queue
    except LookupError as exc:
        ss.flash = str(exc)


# Every action is a callback: Streamlit runs it before the next script run, so one run stores the label
# and shows the next item (not one run to render the old card again, store, then a second to move on).
# Each is handed what was on screen when the key was pressed: ``shown`` = (item, uri, model round).
SOMEONE_ELSE = "Someone else labeled that item a moment ago: nothing stored. Here is the next one."


def _acting():
    """The session as it is now: a callback runs before this rerun's script, so it re-reads who acts."""
    return get_session()


def _still_open(item: int) -> bool:
    if item == ss.get("jumped") or _acting().is_open(item):  # an item jumped to may be relabeled on purpose
        return True
    ss.flash = SOMEONE_ELSE
    ss.current_item = None
    return False


def _act(shown: tuple, label: str | None, source: str) -> None:
    item, uri, model_round = shown
    if not _still_open(item):
        return
    try:
        batch = _acting().label([item], label, source=source, model_round=model_round)
    except (ValueError, LookupError, PermissionError) as exc:  # a bad class name, a role, a read-only project
        ss.flash = f"Nothing stored: {exc}"
        return
    _record(batch, f"{uri} → {label or 'skipped'}")


@st.dialog("Full size", width="large")
def _full_size(item: int, uri: str) -> None:
    """The item's image at full size in a plotly view: the wheel zooms, a drag pans, double-click resets."""
    import plotly.graph_objects as go

    pixels = get_session().full_image(item)
    fig = go.Figure(go.Image(z=pixels))
    fig.update_layout(dragmode="pan", height=min(800, max(300, pixels.shape[0] + 40)),
                      margin={"l": 0, "r": 0, "t": 0, "b": 0}, xaxis={"visible": False},
                      yaxis={"visible": False, "scaleanchor": "x"})
    st.plotly_chart(fig, config={"scrollZoom": True, "displaylogo": False})
    st.caption(f"{uri} · {pixels.shape[1]} × {pixels.shape[0]} px")


def _pass(item: int) -> None:
    ss.passed = [*ss.passed, item]
    ss.jumped = None


def _add_class(shown: tuple) -> None:
    name = ss.get("new_class", "").strip()
    if name:
        _act(shown, name, "manual")
        ss.new_class = ""  # the box is empty for the next class
        ss.release_focus = True  # and lets go of the keyboard, so that digit keys label again


def _accept_neighbourhood(shown: tuple, target: str, k: int, threshold: float) -> None:
    item, _uri, model_round = shown
    if not _still_open(item):
        return
    batch, items = _acting().accept_neighbourhood(item, target, k=k, min_similarity=threshold,
                                                  model_round=model_round)
    _record(batch, f"Accepted {count(len(items), 'item')} as {target}")


# ---------------------------------------------------------------------------------------------
if grid_mode:
    _notices()
    if not classes:
        st.info("Grid mode needs classes and a model round: label a few items first.")
        done()
    g = st.columns([2, 1])
    grid_class = g[0].selectbox("Suggested class", classes, key="grid_class")
    size = g[1].slider("Items", 24, 60, 36, step=6, key="grid_size")
    try:
        cells = session.grid(grid_class, n=size)
    except UnknownClass as exc:
        st.error(str(exc))
        done()
    if not cells:
        st.info(f"No unlabeled items are suggested as “{grid_class}” in the current round.")
        done()
    st.caption("Tick the misfits; everything else is accepted as one batch. Misfits go back to the queue.")
    # A new generation of tick boxes after every accept and undo: the browser would otherwise hand back
    # the ticks of the last grid when the same items return (Accept, then Undo).
    gen = ss.setdefault("grid_gen", 0)
    misfits = []
    for start in range(0, len(cells), GRID_COLUMNS):  # row by row, so Tab moves along a row
        cols = st.columns(GRID_COLUMNS)
        for col, cell in zip(cols, cells[start:start + GRID_COLUMNS]):
            with col:
                st.image(cell.thumb, width="stretch")
                if st.checkbox(f"misfit · {cell.confidence:.0%}", key=f"misfit_{gen}_{cell.item_id}"):
                    misfits.append(cell.item_id)
    n_accept = len(cells) - len(misfits)
    if st.button(f"Accept {count(n_accept, 'item')} as {plain(grid_class)}", type="primary", key="grid_accept", disabled=n_accept == 0):
        batch = session.accept_grid([c.item_id for c in cells], misfits, grid_class)
        _record(batch, f"Accepted {count(n_accept, 'item')} as {grid_class}")
        ss.grid_gen = gen + 1
        st.rerun()
    if st.button("Undo last batch", key="grid_undo", shortcut="Ctrl+Z"):
        _undo()
        ss.grid_gen = gen + 1
        st.rerun()
    done()

def _pinned_item(session, strategy: str, suggested_filter: str | None, bald_range) -> int | None:
    """The item to show: the pinned one while it is still open, else the head of the queue (None, with
    a message on the page, when the queue has nothing to show).

    The item on screen stays pinned until the person acts on it, so a new round (or a colleague's
    label elsewhere) never swaps the item under a key press."""
    current = ss.get("current_item")
    narrowing = (strategy, suggested_filter, bald_range)
    if current is not None and current == ss.get("jumped"):
        return current  # an item found and jumped to stays until the person acts on it or moves on
    if ss.get("current_strategy") == narrowing and current is not None and current not in ss.passed \
            and session.is_open(current):
        return current
    try:
        queue = session.queue(1, strategy=strategy, exclude=ss.passed, suggested=suggested_filter,
                              disagreement=bald_range)
        if not queue and ss.passed:  # every open item was passed over with "Next": start the round again
            ss.passed = []
            queue = session.queue(1, strategy=strategy, suggested=suggested_filter, disagreement=bald_range)
    except LookupError as exc:
        no_round = get_service().predictions() is None
        if no_round:  # the sidebar's poll redraws the page when the first round lands
            ss[CARD_WAITS_FOR_ROUND] = True
        if no_round and get_worker() is not None:
            st.info("The first model round is being trained: the first card shows here by itself in a few "
                    "seconds.")
        else:
            st.info(str(exc))
        return None
    except ValueError as exc:
        st.warning(str(exc))
        return None
    if not queue:
        if suggested_filter is not None or bald_range is not None:
            st.info("No unlabeled item matches the queue filter (Find and filter).")
        else:
            st.success("Every item has a label. Export it from the Data page.")
        return None
    ss.current_item = queue[0].item_id
    ss.current_strategy = narrowing
    return ss.current_item


# ---------------------------------------------------------------------------------------------
# The card, its actions and its neighbourhood are one fragment: a key press reruns only this part of
# the page (the order, the filters and the sidebar stay as they are), so the next card is sent and
# painted sooner and a press costs the server less while other sessions label. Every run of it reads
# the session anew (``get_session``), so a changed role or an ended sign-in holds here too.
@st.fragment
def card_section(strategy: str, suggested_filter: str | None, bald_range) -> None:
    """The pinned item's card, the keys that act on it, its neighbourhood and its history."""
    session = get_session()
    _notices()
    classes = session.class_names()
    current = _pinned_item(session, strategy, suggested_filter, bald_range)
    if current is None:
        ss.pop(CARD_ROUND, None)  # no card: nothing for a new round to refresh
        return

    ss.pop(CARD_WAITS_FOR_ROUND, None)
    card = session.card(current)
    # the sidebar redraws the page once a newer round changes what this card tells
    ss[CARD_ROUND] = (card.round_id, current, card_signature(card))
    suggestion = card.pseudo_label
    left, right = st.columns([3, 4])
    with left:
        if card.image_problem:  # the item stays labelable from the keys; `check --repair` finds every such file
            st.warning(f"{card.uri}: {card.image_problem}. Label or skip it from the keys; "
                       "`python -m labeling check <project> --repair` lists every such file.")
        else:
            st.image(card.image_url or card.image or card.path, width="stretch", caption=card.uri,
                     output_format=card.image_format)
        if st.button("Full size", key="full_size", shortcut="F", icon=":material/zoom_in:",
                     help="The image at full size: scroll to zoom, drag to pan (F)", disabled=bool(card.image_problem)):
            _full_size(current, card.uri)
    with right:
        if card.current is not None:  # an item found and jumped to: its label now, which a key press replaces
            st.info(f"Labeled {plain(card.current.label or 'skipped')} by {plain(card.current.user)} "
                    f"({card.current.source}); a class key relabels it.")
        if suggestion:
            st.subheader(f"Suggestion: {plain(suggestion)}")
            # one line, not a row of metric cards: fewer elements to send and paint on every key press
            st.markdown(f"Confidence **{card.confidence:.0%}** · disagreement (BALD) **{card.scores.get('bald', 0):.3f}**"
                        f" · margin score **{card.scores.get('margin', 0):.2f}**")
            for name, p in card.top:
                st.progress(min(max(p, 0.0), 1.0), text=f"{plain(name)} · {p:.0%}")
            if len(card.votes) > 1:  # one voter (a model alone, before labels): its own line below says it
                votes = ", ".join(f"{m}: {plain(v)}" for m, v in card.votes)
                st.caption(f"Votes of round {card.round_id}: {votes}")
            if card.models:  # people's own models, imported as predictions
                st.caption(" · ".join(f"Zero-shot from the class names: {plain(cls)} ({p:.0%})" if model == "zero-shot"
                                      else f"Model “{plain(model)}” suggests {plain(cls)} ({p:.0%})"
                                      for model, cls, p in card.models))
        else:
            st.subheader("No suggestion yet")
            st.caption("The first rounds ask for typical items of distinct clusters; suggestions appear once two "
                       "classes have labels.")
            if card.hint:
                st.caption(f"The backbone's ImageNet guess: {plain(card.hint[0])} ({card.hint[1]:.0%})")
                st.button(f"Use “{plain(card.hint[0])}” as a class", key="use_hint", shortcut="Shift+Enter",
                          on_click=_act, args=((current, card.uri, card.round_id), card.hint[0], "manual"),
                          help="Label this item with the ImageNet guess, as a new class (Shift+Enter)")

        shown = (current, card.uri, card.round_id)  # what a key press on this run's buttons acts on
        # Accept has a row of its own, so that a long class name never truncates it; the rest share one.
        st.button(f"Accept {plain(suggestion or '')}".strip(), type="primary", key="accept", shortcut="Enter",
                  disabled=suggestion is None, on_click=_act, args=(shown, suggestion, "accept_suggestion"),
                  width="stretch")
        a = st.columns(3)
        a[0].button("Skip / unsure", key="skip", shortcut="S", on_click=_act, args=(shown, None, "manual"),
                    width="stretch")
        a[1].button("Next", key="next", shortcut="N", on_click=_pass, args=(current,), width="stretch")
        a[2].button("Undo", key="undo", shortcut="Ctrl+Z", on_click=_undo, width="stretch")

        if classes:
            # Every class keeps its key for the project's life (creation order); thirty have one, the rest the box below.
            keyed = [(key, name) for key, name in session.class_keys() if key is not None]
            bcols = st.columns(min(len(keyed), 4) or 1)
            for k, (key, name) in enumerate(keyed):
                bcols[k % len(bcols)].button(f"{key_label(key)} · {plain(name)}", key=f"class_{key}", shortcut=key,
                                             on_click=_act, args=(shown, name, "manual"),
                                             help=f"Label as {plain(name)} (key {key_label(key)})", width="stretch")
        f = st.columns([3, 1])
        chosen = f[0].selectbox("Any class (type to search)", classes, index=None, key="typeahead",
                                placeholder="Start typing a class name")
        f[1].button("Label", key="typeahead_button", disabled=chosen is None, on_click=_act,
                    args=(shown, chosen, "manual"))
        f = st.columns([3, 1])
        # Enter in the box adds the class and labels the item, as its placeholder says (the button too).
        new_class = f[0].text_input("New class", key="new_class", placeholder="Add a class and label this item",
                                    on_change=_add_class, args=(shown,))
        f[1].button("Add", key="new_class_button", disabled=not new_class.strip(), on_click=_add_class, args=(shown,))

    st.divider()
    nh = st.columns([2, 1, 1])
    nh[0].subheader("Neighbourhood")
    k = nh[1].slider("Neighbours", 4, 15, 12, key="nh_k")
    threshold = nh[2].slider("Similarity threshold", 0.5, 1.0, 0.8, 0.01, key="nh_threshold")
    neighbours = session.neighbours(current, k=k)
    target = suggestion
    candidates = session.candidates_among(neighbours, target, min_similarity=threshold) if target else []
    if neighbours:  # one element for the whole strip: a key press repaints one block, not thirty
        st.html(neighbour_strip_html(neighbours, candidates))
    if target:
        st.button(f"Accept neighbourhood as {plain(target)} ({len(candidates) + 1} items)", key="accept_neighbourhood",
                  shortcut="A", on_click=_accept_neighbourhood, args=((current, card.uri, card.round_id), target, k,
                                                                     threshold))
    with st.expander("History of this item"):
        events = session.history(current)
        if not events:
            st.caption("No labels yet.")
        for e in events:
            what = "undo" if e["kind"] == "undo" else (e["label"] or "skip")
            seen = f" · saw round {e['model_round']}" if e["model_round"] is not None else ""
            undone = " · undone" if e["undone"] else ""
            st.text(f"{e['when']:%Y-%m-%d %H:%M:%S} · {e['user']} · {what} · {e['source']}{seen}{undone}")
    if card.image != card.path:  # a project of large photos: the next cards' previews are made while this is looked at
        session.prepare_next(strategy=strategy, exclude=[current, *ss.passed], suggested=suggested_filter,
                             disagreement=bald_range)


card_section(strategy, suggested_filter, bald_range)
