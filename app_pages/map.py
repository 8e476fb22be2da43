"""Map: every item in 2-D, coloured by label, pseudo-label, disagreement or annotator.

Select points with the lasso or box tool (or type ids) and label them as one batch.
"""
from __future__ import annotations

import html
import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from labeling.session import COLOR_BY, NO_VALUE, ProjectError, parse_item_ids
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

    def custom(df):
        return np.column_stack([
            df["item_id"].to_numpy(),
            [html.escape(str(u)) for u in df["uri"]],
            [html.escape(str(v)) if v is not None else "—" for v in df["label"]],
            [html.escape(str(v)) if v is not None else "—" for v in df["pseudo_label"]],
            ["—" if np.isnan(c) else f"{c:.2f}" for c in df["confidence"]],
        ])

    fig = go.Figure()
    if color_by == "disagreement":
        fig.add_trace(go.Scattergl(
            x=frame["x"], y=frame["y"], mode="markers", customdata=custom(frame), hovertemplate=hover,
            marker={"size": 6, "color": frame["color"].fillna(0.0), "colorscale": "Viridis", "showscale": True,
                    "colorbar": {"title": {"text": frame.attrs.get("disagreement") or "score"}}},
            name="items"))
    else:
        cats = sorted(frame["color"].unique(), key=lambda c: (c == NO_VALUE, c))
        for cat in cats:
            df = frame[frame["color"] == cat]
            marker = {"size": 6}
            if cat == NO_VALUE:
                marker["color"] = "lightgrey"
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
    names = session.class_names()
    st.subheader(f"{len(ids)} selected")
    shown = session.map.thumbnails(ids[:MAX_GRID])
    for start in range(0, len(shown), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, (item_id, path, _uri) in zip(cols, shown[start:start + GRID_COLUMNS]):
            col.image(str(path), caption=f"#{item_id}", width="stretch")
    if st.button("Clear selection", key="map_clear_selection"):
        st.session_state.pop("map_selection", None)
        st.rerun()
    if len(ids) > MAX_GRID:
        st.caption(f"Showing {MAX_GRID} of {len(ids)}; all {len(ids)} are labeled by the button below.")
    c1, c2, c3 = st.columns([2, 2, 2])
    choice = c1.selectbox("Class", [*names, NEW_CLASS], key="map_class")
    new_name = ""
    if choice == NEW_CLASS:
        new_name = c2.text_input("New class name", key="map_new_class")
    label = new_name.strip() if choice == NEW_CLASS else choice
    with c3:
        st.write("")
        clicked = st.button(f"Label {len(ids)} selected items", key="map_label_button", type="primary",
                            disabled=not label)
    if clicked:
        try:
            batch = session.map.label(ids, label)
        except (ValueError, LookupError) as exc:
            st.error(str(exc))
        else:
            st.session_state["map_last_batch"] = {"batch": batch, "n": len(ids), "label": label}
            st.session_state.pop("map_selection", None)
            st.rerun()  # redraw with the new labels and classes


def _last_batch() -> None:
    last = st.session_state.get("map_last_batch")
    if not last:
        return
    c1, c2 = st.columns([5, 1])
    c1.success(f"Labeled {last['n']} items as {plain(last['label'])} (one batch).")
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

with st.expander("Select by id"):
    typed = st.text_input("Item ids (comma-separated)", key="map_select_ids")
selected: list[int] = []
if typed.strip():
    try:
        selected = parse_item_ids(typed)
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
    st.info("Undone: those items are unlabeled again.")
if selected:
    _label_panel(selected)
else:
    st.caption("Nothing selected.")
_last_batch()
