"""The server ``python -m labeling serve`` runs: the app (``app.py``) plus the one route that keeps a
team sign-in across reloads (``app_pages/session_cookie.py``). The project opens, and its retrain worker's
training process starts (paying torch's start-up), as the server starts, not when the first page opens."""
import threading
from contextlib import asynccontextmanager

import streamlit as st

from app_pages.common import warm_start
from app_pages.session_cookie import routes


@asynccontextmanager
async def _lifespan(_app):
    threading.Thread(target=warm_start, name="quorum-warm-start", daemon=True).start()
    yield


app = st.App("app.py", routes=routes(), lifespan=_lifespan)
