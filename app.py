"""Quorum's Streamlit entry point: opens the project once per server and shows its summary.

Run with ``python -m labeling serve DIR`` (or ``make run`` for the demo). The project folder comes
from the ``QUORUM_PROJECT`` environment variable.
"""
from __future__ import annotations

import os

import pandas as pd  # imported first: plotly's lazy pandas import must not race the first click
import streamlit as st

from labeling.project import ProjectError
from labeling.service import LabelingService

st.set_page_config(page_title="Quorum", layout="wide")


@st.cache_resource
def open_service(root: str) -> LabelingService:
    return LabelingService(root)


root = os.environ.get("QUORUM_PROJECT", "demo-project")
try:
    service = open_service(root)
except ProjectError as exc:
    st.error(str(exc))
    st.stop()

summary = service.summary()
st.title("Quorum")
st.caption(f"Project: {summary['root']}")
cols = st.columns(4)
cols[0].metric("Items", summary["items"])
cols[1].metric("Labels", summary["labels"])
cols[2].metric("Classes", len(summary["classes"]))
rnd = summary["round"]
cols[3].metric("Model round", "none" if rnd is None else rnd["id"])
if summary["unreadable"]:
    st.warning(f"{summary['unreadable']} files could not be read and were skipped (see the import summary).")
if rnd is not None:
    st.subheader("Next items to label")
    queue = service.queue(20)
    st.dataframe(pd.DataFrame([q.to_dict() for q in queue]).drop(columns=["top"]), hide_index=True)
    st.subheader("Rounds")
    st.dataframe(pd.DataFrame([{"round": r["id"], "status": r["status"], "labels": r["n_labels"],
                                "finished": r["finished_at"], "cv accuracy": r["metrics"].get("cv_accuracy")}
                               for r in service.rounds()]), hide_index=True)
