"""The server ``python -m labeling serve`` runs: the app (``app.py``) plus the one route that keeps a
team sign-in across reloads (``labeling/team/cookie_route.py``). The project opens, and its retrain
worker's training process starts (paying torch's start-up), as the server starts, not when the first
page opens: in a thread, so the server listens at once (this module imports no torch)."""
import threading
from contextlib import asynccontextmanager

import streamlit as st

from labeling.team.cookie_route import routes


def _warm_start() -> None:
    from app_pages.common import warm_start  # the engine and torch: imported here, beside a listening server

    warm_start()


@asynccontextmanager
async def _lifespan(_app):
    threading.Thread(target=_warm_start, name="quorum-warm-start", daemon=True).start()
    yield


app = st.App("app.py", routes=routes(), lifespan=_lifespan)
