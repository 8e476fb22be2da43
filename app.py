"""Quorum's Streamlit entry point: navigation over the pages; the project opens once per server.

Run with ``python -m labeling serve DIR`` (or ``make run`` for the demo). The project folder comes
from the ``QUORUM_PROJECT`` environment variable.
"""
from __future__ import annotations

import pandas as pd  # noqa: F401  imported first: plotly's lazy pandas import must not race the first click
import streamlit as st

from pages.common import get_service, identity, sidebar

st.set_page_config(page_title="Quorum", page_icon=":material/how_to_vote:", layout="wide")

get_service()  # opens the project (and starts the retrain worker) once per server
identity()  # team mode: nothing below shows before the session signs in
nav = st.navigation([
    st.Page("pages/label.py", title="Label", icon=":material/label:", default=True),
    st.Page("pages/map.py", title="Map", icon=":material/map:"),
    st.Page("pages/model.py", title="Model", icon=":material/monitoring:"),
    st.Page("pages/data.py", title="Data", icon=":material/folder_open:"),
])
sidebar()
nav.run()
