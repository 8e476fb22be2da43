"""The server ``python -m labeling serve`` runs: the app (``app.py``) plus the one route that keeps a
team sign-in across reloads (``app_pages/session_cookie.py``)."""
import streamlit as st

from app_pages.session_cookie import routes

app = st.App("app.py", routes=routes())
