"""Where the app's own files live: ``app.py``, ``asgi.py``, ``app_pages/`` and ``assets/``.

Run from the source tree they are beside the ``labeling`` package; installed from the wheel they are in
``<prefix>/share/quorum`` (the wheel's data files), so ``quorum serve`` and ``quorum demo`` work from any
folder.
"""
from __future__ import annotations

import site
import sys
import sysconfig
from pathlib import Path

SHARE = Path("share") / "quorum"


def install_root() -> Path:
    """The folder that holds ``app.py`` and ``assets/`` (the source tree first, then the installed copy)."""
    source = Path(__file__).resolve().parents[1]
    if (source / "app.py").is_file():
        return source
    bases = [sysconfig.get_path("data"), sys.prefix, sys.base_prefix, getattr(site, "USER_BASE", None)]
    for base in bases:
        if base and (Path(base) / SHARE / "app.py").is_file():
            return Path(base) / SHARE
    raise FileNotFoundError(f"the app's files (app.py, app_pages/, assets/) are not installed under "
                            f"{Path(sys.prefix) / SHARE}: reinstall quorum")
