"""The session benchmark's floor: a bare Streamlit page that swaps one image per key press.

It receives the key the way the Label page does (``st.button(..., shortcut="Enter")`` with an
``on_click`` callback: one script run per press) and shows the image the same way (``st.image`` of a
file path, ``width="stretch"``, the file's name as the caption, wide layout), with nothing else on
the page. Served by ``bench/session.py`` with ``python -m streamlit run bench/bare_page.py``; the images
come from the folder in ``BENCH_BARE_IMAGES``.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st


@st.cache_resource
def _files(folder: str) -> list[Path]:
    return sorted(Path(folder).rglob("*.png"))


st.set_page_config(page_title="bare", layout="wide")
files = _files(os.environ["BENCH_BARE_IMAGES"])
ss = st.session_state
ss.setdefault("k", 0)
shown = files[ss.k % len(files)]
left, right = st.columns([3, 4])
with left:
    st.image(str(shown), width="stretch", caption=shown.name)


def _next() -> None:
    ss.k += 1


with right:
    st.button("Next", key="next", type="primary", shortcut="Enter", on_click=_next)
