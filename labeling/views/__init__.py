"""What the pages show, without Streamlit: the map frame, the model report, the data page's actions.

The last mile of the loop, read by ``app_pages/``. May import every package of ``labeling`` and
``storage``; never ``streamlit``.
"""
