"""Map: every item in 2-D, coloured by label, pseudo-label, disagreement or annotator.

Select points with the lasso or box tool (or type ids) and label them as one batch.
"""
from __future__ import annotations

import html
import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from labeling.session import COLOR_BY, DASH, NO_VALUE, ProjectError, count, plan_bulk
from app_pages.common import done, get_session, plain

MAX_GRID = 60
GRID_COLUMNS = 10
NEW_CLASS = "New class…"
COLOR_NAMES = {"label": "Label", "pseudo_label": "Pseudo-label", "disagreement": "Disagreement",
               "annotator": "Annotator"}
MAP_BUILD_ENV = "QUORUM_MAP_BUILD"
# Set to 0 to keep the UMAP build from starting by itself (it can still be started by hand).


def _figure(frame, color_by: str) -> go.Figure:
    hover = ("%{customdata[1]}<br>label: %{customdata[2]}<br>pseudo-label: %{customdata[3]}"
             "<br>confidence: %{customdata[4]}<extra></extra>")

    def text(values):
        return [DASH if v is None or v != v else html.escape(str(v)) for v in values]  # v != v: NaN

    def custom(df):
        return np.column_stack([
            df["item_id"].to_numpy(),
            text(df["uri"]),
            text(df["label"]),
            text(df["pseudo_label"]),
            [DASH if np.isnan(c) else f"{c:.2f}" for c in df["confidence"]],
        ])

    fig = go.Figure()
    if color_by == "disagreement":
        fig.add_trace(go.Scattergl(
            x=frame["x"], y=frame["y"], mode="markers", customdata=custom(frame), hovertemplate=hover,
            marker={"size": 6, "color": frame["color"].fillna(0.0), "colorscale": "Viridis", "showscale": True,
                    "colorbar": {"title": {"text": frame.attrs.get("disagreement") or "score"}}},
            name="items"))
    else:
        # One colour per class for the project's life; items without a value first, so they lie underneath.
        for cat, colour in frame.attrs["colors"].items():
            df = frame[frame["color"] == cat]
            marker = {"size": 5 if cat == NO_VALUE else 6, "color": colour}
            fig.add_trace(go.Scattergl(x=df["x"], y=df["y"], mode="markers", customdata=custom(df),
                                       hovertemplate=hover, marker=marker, name=html.escape(cat)))
    fig.update_layout(height=620, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
                      legend={"itemsizing": "constant"}, xaxis={"visible": False},
                      yaxis={"visible": False, "scaleanchor": "x"})
    return fig


def _selected_ids(event) -> list[int]:
    """Item ids of the chart's selected points (custom data holds the id first)."""
    points = []
    if event is not None:
        points = (event.get("selection") or {}).get("points") or []
    if not points:
        points = ((st.session_state.get("map_chart") or {}).get("selection") or {}).get("points") or []
    ids = []
    for pt in points:
        data = pt.get("customdata")
        if data:
            ids.append(int(float(data[0])))
    return list(dict.fromkeys(ids))


def _build_status(builder, method: str) -> None:
    status = builder.status()
    cols = st.columns([5, 1])
    with cols[0]:
        if method == "umap":
            st.caption("UMAP map of the current vectors.")
        elif status == "building":
            st.info("Showing PCA while the UMAP map is being built.")
        elif status.startswith("failed"):
            st.warning(f"Showing PCA: the UMAP build {status}")
        else:
            st.info("Showing PCA; the UMAP map has not been built yet.")
    with cols[1]:
        label = "Rebuild map" if method == "umap" or status.startswith("failed") else "Build UMAP"
        if st.button(label, key="map_rebuild_button", disabled=status == "building"):
            builder.start(force=True)
            st.rerun()


@st.fragment(run_every=3)
def _watch_build(builder, method: str) -> None:
    """Reload the page once the background UMAP build is done."""
    if method == "pca" and builder.status() == "ready":
        st.rerun(scope="app")


def _label_panel(ids: list[int]) -> None:
    """The selection, what its items carry now, and one batch that labels them: no class is chosen for
    the person, a person's labels stay unless "overwrite" is ticked, and single items can be left out."""
    names = session.class_names()
    rows = session.map.selection(ids)
    st.subheader(f"{count(len(rows), 'item')} selected")
    shown = session.map.thumbnails([r.item_id for r in rows[:MAX_GRID]])
    for start in range(0, len(shown), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, (_item_id, path, uri) in zip(cols, shown[start:start + GRID_COLUMNS]):
            col.image(str(path), caption=uri.rsplit("/", 1)[-1], width="stretch")
    if len(rows) > MAX_GRID:
        st.caption(f"Showing {MAX_GRID} of {len(rows)}; the label below applies to all {len(rows)}.")
    st.dataframe([{"file": r.name, "id": r.item_id, "label now": r.label or ("skipped" if r.source else DASH),
                   "by": r.annotator or DASH, "source": r.source or DASH} for r in rows],
                 hide_index=True, width="stretch", height=min(38 + 35 * len(rows), 250), placeholder=DASH)
    name_of = {r.item_id: f"{r.name} (#{r.item_id})" for r in rows}
    leave_out = st.multiselect("Leave out", list(name_of), format_func=name_of.get, key="map_leave_out",
                               placeholder="Items to drop from this selection")
    n_people = sum(1 for r in rows if r.label is not None and r.item_id not in leave_out)
    overwrite = False
    if n_people:
        overwrite = st.checkbox(f"Overwrite the {count(n_people, 'label')} people gave", key="map_overwrite",
                                help="Unticked, items that already have a label keep it.")
    plan = plan_bulk(rows, overwrite=overwrite, leave_out=leave_out)
    c1, c2, c3 = st.columns([2, 2, 2])
    choice = c1.selectbox("Class", [*names, NEW_CLASS], index=None, key="map_class", placeholder="Choose a class")
    new_name = ""
    if choice == NEW_CLASS:
        new_name = c2.text_input("New class name", key="map_new_class")
    label = new_name.strip() if choice == NEW_CLASS else (choice or "")
    with c3:
        st.write("")
        what = f"Label {count(len(plan.to_label), 'item')}" + (f" as {label}" if label else "")
        clicked = st.button(what, key="map_label_button", type="primary", disabled=not label or not plan.to_label)
    if plan.kept:
        st.caption(f"{count(len(plan.kept), 'item')} already labeled by a person will keep {'its' if len(plan.kept) == 1 else 'their'} label.")
    c = st.columns([1, 5])
    if c[0].button("Clear selection", key="map_clear_selection"):
        _clear_selection()
        st.rerun()
    if clicked:
        try:
            result = session.map.label(ids, label, overwrite=overwrite, leave_out=leave_out)
        except (ValueError, LookupError, PermissionError) as exc:
            st.error(str(exc))
        else:
            st.session_state["map_last_batch"] = {"batch": result.batch_id, "n": len(result.labeled),
                                                  "label": label, "kept": len(result.kept)}
            _clear_selection()
            st.rerun()  # redraw with the new labels and classes


def _clear_selection() -> None:
    for key in ("map_selection", "map_leave_out", "map_overwrite", "map_class", "map_new_class"):
        st.session_state.pop(key, None)


def _last_batch() -> None:
    last = st.session_state.get("map_last_batch")
    if not last:
        return
    c1, c2 = st.columns([5, 1])
    kept = f"; {count(last['kept'], 'item')} kept a person's label" if last.get("kept") else ""
    c1.success(f"Labeled {count(last['n'], 'item')} as {plain(last['label'])} (one batch){kept}.")
    if c2.button("Undo", key="map_undo_button"):
        try:
            items = get_session().undo(last["batch"])
        except LookupError as exc:
            st.error(str(exc))
        else:
            st.session_state.pop("map_last_batch", None)
            st.session_state["map_undone"] = len(items)
            st.rerun()


st.title("Map")
session = get_session()
builder = session.map.builder()
try:
    item_ids, xy, method = session.map.layout(build=os.environ.get(MAP_BUILD_ENV, "1") != "0")
except ProjectError as exc:
    st.error(str(exc))
    done()
if len(item_ids) == 0:
    st.info("No embedded items yet: import images and embed them first.")
    done()

_build_status(builder, method)
_watch_build(builder, method)
color_by = st.selectbox("Colour by", COLOR_BY, format_func=COLOR_NAMES.get, key="map_color_by")
frame = session.map.frame(xy, item_ids, color_by=color_by)
if color_by == "disagreement":
    name = frame.attrs.get("disagreement")
    if name is None:
        st.caption("No model round yet: nothing to colour by.")
    elif name == "typicality":
        st.caption("Disagreement score: typicality (no labels yet; higher = more typical).")
    else:
        st.caption(f"Disagreement score: {name} (higher = the model is less sure).")
n_labeled = int(frame["label"].notna().sum())
st.caption(f"{len(frame)} items · {n_labeled} labeled · lasso or box-select points to label them together")

event = st.plotly_chart(_figure(frame, color_by), on_select="rerun", selection_mode=("points", "box", "lasso"),
                        key="map_chart")

with st.expander("Select by id or file name"):
    typed = st.text_input("Item ids, file names or paths (comma-separated)", key="map_select_ids")
with st.expander("Select by text", expanded=bool(st.session_state.get("map_text_query"))):
    if session.can_search_text():
        tq = st.columns([4, 1])
        text_query = tq[0].text_input("Images like", key="map_text_query", placeholder="a red car",
                                      help="Ranked by similarity to the text (the CLIP backbone's text tower)")
        text_n = tq[1].number_input("How many", 1, 1000, 50, key="map_text_n")
    else:
        text_query = ""
        st.caption("Text search needs a CLIP backbone (Data page: embed with clip_vitb32; README: backbones).")
selected: list[int] = []
if typed.strip():
    try:
        selected = session.map.resolve(typed)
    except ValueError as exc:
        st.error(str(exc))
elif text_query.strip():
    try:
        selected = [h.item_id for h in session.search_text(text_query, n=int(text_n))]
    except ValueError as exc:
        st.error(str(exc))
else:
    # The chart is redrawn whenever a new round lands, and a redraw drops the lasso: keep the
    # selection until it is labeled or cleared.
    selected = _selected_ids(event)
    if selected:
        st.session_state["map_selection"] = selected
    else:
        selected = st.session_state.get("map_selection", [])

if st.session_state.pop("map_undone", None) is not None:
    st.info("Undone: those items are back to what they were before the batch.")
if selected:
    _label_panel(selected)
else:
    st.caption("Nothing selected.")
_last_batch()
