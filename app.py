"""Quorum's Streamlit entry point: navigation over the pages; the project opens once per server.

Run with ``python -m labeling serve DIR`` (or ``make run`` for the demo). The project folder comes
from the ``QUORUM_PROJECT`` environment variable.
"""
from __future__ import annotations

import pandas as pd  # noqa: F401  imported first: plotly's lazy pandas import must not race the first click
import streamlit as st

from app_pages.common import CARD_ROUND, PageDone, get_service, sign_in_page, signed_in, sidebar


def main() -> None:
    st.set_page_config(page_title="Quorum", page_icon=":material/how_to_vote:", layout="wide")
    get_service()  # opens the project (and starts the retrain worker) once per server
    who = signed_in()
    if who is None:  # team mode before sign-in: one page, whatever the URL; no project page is registered
        st.navigation([st.Page(sign_in_page, title="Sign in", url_path="sign-in")], position="hidden").run()
        return
    pages = [
        st.Page("app_pages/label.py", title="Label", icon=":material/label:", default=True),
        st.Page("app_pages/map.py", title="Map", icon=":material/map:"),
    ]
    if who.allows("reviewer"):  # the engine refuses annotators too; this only hides it
        pages.append(st.Page("app_pages/review.py", title="Review", icon=":material/rule:"))
    pages += [
        st.Page("app_pages/model.py", title="Model", icon=":material/monitoring:"),
        st.Page("app_pages/data.py", title="Data", icon=":material/folder_open:"),
    ]
    nav = st.navigation(pages)
    st.session_state.pop(CARD_ROUND, None)  # the Label page sets it again when it shows a card
    try:
        nav.run()
    except PageDone:  # the page ended early (app_pages.common.done): its sidebar is still drawn
        pass
    sidebar()  # after the page: a key press's next card is on its way before the sidebar is drawn


# Streamlit runs this file as "__main__" (and leaves it registered as the main module). A process that
# multiprocessing spawns (the map's UMAP worker) re-imports the main module as "__mp_main__": it must
# not run the app.
if __name__ != "__mp_main__":
    main()
