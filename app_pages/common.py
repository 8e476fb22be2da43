"""Streamlit-side plumbing shared by the pages: the one cached service, the user, the sidebar.

Only layout lives here and in the pages; every decision is made in ``labeling/``.
"""
from __future__ import annotations

import gc
import logging
import os
import time
from datetime import datetime, timezone
from typing import NoReturn

import streamlit as st

from labeling import session as facade
from labeling.session import ProjectError
from labeling.session import LabelingService, RetrainWorker

PROJECT_ENV = "QUORUM_PROJECT"
USER_ENV = "QUORUM_USER"
REFRESH_S = 3
# How often fragments look for a newer model round.


@st.cache_resource(show_spinner="Opening the project…")
def _open(root: str, start_worker: bool) -> tuple[LabelingService, RetrainWorker | None]:
    """One service and one retrain worker per project per server, shared by all sessions."""
    opened = facade.open_project(root, start_worker=start_worker,
                                 min_new_events=int(os.environ.get("QUORUM_RETRAIN_EVENTS", "5")),
                                 max_wait_s=float(os.environ.get("QUORUM_RETRAIN_SECONDS", "5")),
                                 early_labels=int(os.environ.get("QUORUM_RETRAIN_EARLY", "50")))
    # Everything loaded so far (the engine, numpy, the project) lives as long as the server: keep it out of
    # the garbage collector's scans, so a collection during a key press costs milliseconds, not 250 ms.
    gc.freeze()
    return opened


def warm_start() -> None:
    """Open the project and start its retrain worker before any page asks (called as the server starts):
    the first rounds then find the training process ready. A failure is left for the first page to show."""
    try:
        _open(project_root(), os.environ.get("QUORUM_WORKER", "1") != "0")
    except Exception as exc:  # noqa: BLE001  the page opening it again shows the one-line error
        logging.getLogger("quorum").warning("the project did not open at server start: %s", exc)


class PageDone(Exception):
    """Ends a page early (:func:`done`); ``app.py`` catches it and still draws the sidebar, which it
    draws after the page so that a key press's next card reaches the browser first."""


def done() -> NoReturn:
    """``st.stop()`` for a page: nothing more of the page runs, and the sidebar is still drawn."""
    raise PageDone


def project_root() -> str:
    return os.environ.get(PROJECT_ENV, "demo-project")


def get_service() -> LabelingService:
    try:
        return _open(project_root(), os.environ.get("QUORUM_WORKER", "1") != "0")[0]
    except ProjectError as exc:
        st.error(str(exc))
        st.stop()


def get_worker() -> RetrainWorker | None:
    return _open(project_root(), os.environ.get("QUORUM_WORKER", "1") != "0")[1]


def signed_in() -> facade.Identity | None:
    """Who this browser session acts as, or None in team mode before sign-in. In team mode the identity
    is re-read on every rerun, so a changed role or a disabled user takes effect at once; a browser
    that signed in earlier presents its session cookie, which the engine checks on every rerun too."""
    service = get_service()
    if facade.mode(service) == "team":
        return _team_identity(service)
    if "user" not in st.session_state:
        st.session_state["user"] = os.environ.get(USER_ENV, "local")
    typed = str(st.session_state.get("user_input") or "").strip()
    if typed and typed != st.session_state["user"]:  # a name committed in the sidebar counts at once, even
        st.session_state["user"] = typed  # for an action of the same rerun (callbacks run before the sidebar)
    return facade.local_identity(service, st.session_state["user"])


def _team_identity(service) -> facade.Identity | None:
    ss = st.session_state
    token = ss.get("session_token")
    if token is None and ss.get("identity") is None:
        cookie = _cookie()
        if cookie is not None and cookie != ss.get("refused_cookie"):
            token = cookie  # a reload, or a page opened by its URL: the browser's cookie speaks for it
    if token is not None:
        try:
            ident = facade.resume_web_session(service, token)
        except facade.AuthError as exc:
            ss["signin_error"] = str(exc)
            ident = None
        if ident is None:  # expired, signed out elsewhere, disabled: back to the sign-in form
            for key in ("session_token", "identity"):
                ss.pop(key, None)
            ss["refused_cookie"] = token
            ss["clear_cookie"] = True
            return None
        ss["session_token"], ss["identity"] = token, ident
        return ident
    ident = ss.get("identity")
    if ident is not None:
        try:
            ident = ss["identity"] = facade.refresh(service, ident)
        except facade.AuthError as exc:
            ss.pop("identity", None)
            ss["signin_error"] = str(exc)
            ident = None
    return ident


def _cookie() -> str | None:
    """The browser's session cookie, when it sent one (HttpOnly: only the server reads it)."""
    try:
        return st.context.cookies.get(facade.web_cookie.COOKIE)
    except Exception:  # outside a browser session (bare mode, some tests)
        return None


def identity() -> facade.Identity:
    """Who this browser session acts as; in team mode before sign-in, the sign-in form and nothing else."""
    ident = signed_in()
    if ident is None:
        sign_in_page()
        st.stop()
    return ident


def sign_in_page() -> None:
    """The only page a team-mode session sees before it signs in: no project data, no action."""
    if st.session_state.pop("clear_cookie", False):  # signed out, or the cookie stands for nobody now
        st.html(facade.web_cookie.CLEAR_COOKIE_SCRIPT, unsafe_allow_javascript=True)
    if "signin_error" in st.session_state:
        st.error(st.session_state.pop("signin_error"))
    _sign_in_form(get_service())


def get_session() -> facade.Session:
    """This browser session's facade: the shared service and who acts."""
    return facade.Session(get_service(), identity())


def _sign_in_form(service) -> None:
    st.title("Sign in")
    with st.form("sign_in"):
        name = st.text_input("Name", key="signin_name")
        password = st.text_input("Password", type="password", key="signin_password")
        if st.form_submit_button("Sign in"):
            try:
                ident = facade.sign_in(service, name, password, client=_client_address())
            except facade.AuthError as exc:
                st.error(str(exc))
            else:
                token = facade.start_web_session(service, ident)  # None on a read-only project
                st.session_state.update(identity=ident, session_token=token, set_cookie=token)
                st.session_state.pop("refused_cookie", None)
                st.rerun()


def _client_address() -> str | None:
    """The browser's address, for per-client sign-in throttling (None where Streamlit cannot tell)."""
    try:
        return getattr(st.context, "ip_address", None) or None
    except Exception:  # outside a script run (bare mode, some tests)
        return None


def current_user() -> str:
    """The name stored with every label this session makes."""
    return identity().name


def current_role() -> str:
    return identity().role


def plain(text) -> str:
    """Text safe inside Markdown: user-provided names are shown, never interpreted."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~$" else ch for ch in str(text))


def ago(ts) -> str:
    if ts is None:
        return "never"
    if isinstance(ts, datetime):
        now = datetime.now(timezone.utc).replace(tzinfo=None) if ts.tzinfo is None else datetime.now(timezone.utc)
        seconds = (now - ts).total_seconds()
        if ts.tzinfo is None:  # DuckDB current_timestamp is stored in UTC
            seconds = (datetime.now(timezone.utc).replace(tzinfo=None) - ts).total_seconds()
    else:
        seconds = time.time() - float(ts)
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


# At most one "new round" toast this often (early rounds come every few seconds); the sidebar shows every round.
ROUND_TOAST_EVERY_S = 30


@st.fragment(run_every=REFRESH_S)
def sidebar_status() -> None:
    """Project, the model round in use, its labels and age, and the retrain worker's state; a toast when a
    newer round is in use (one fragment per session polls, reading only what changed since)."""
    service = get_service()
    summary = service.summary()
    newest = summary["round"]["round_id"] if summary["round"] else None
    _refresh_stale_card(newest)  # first: the app's rerun draws this fragment again, toast included
    _rerun_waiting_page(summary["round"])
    _toast_new_round(newest)
    st.caption(f"Project **{os.path.basename(summary['root'])}**")
    rnd = summary["round"]
    if rnd is None:
        st.write("No model round yet")
    else:
        acc = rnd["metrics"].get("cv_accuracy")
        st.write(f"Round **{rnd['round_id']}** · {rnd['labels']} labels · finished {ago(rnd['finished_at'])}")
        if acc is not None:
            st.caption(f"cross-validated accuracy {acc:.1%}")
    st.caption(f"{summary['labels']} of {summary['items']} items labeled")
    worker = get_worker()
    if worker is not None:
        s = worker.status
        st.caption(f"Retraining: {s.state}" + (f" · {s.pending_events} new events" if s.pending_events else ""))
        if s.last_error:
            st.warning(f"Last round failed: {s.last_error}")
    failed = [r for r in service.rounds(newest=3) if r["status"] == "failed"]
    if failed and (rnd is None or failed[-1]["id"] > rnd["round_id"]):
        st.warning(f"Round {failed[-1]['id']} failed; round {rnd['round_id'] if rnd else '—'} stays in use.")


CARD_ROUND = "card_round"
# Session key: (round, item, what it tells: facade.card_signature) of the Label page's card, while shown.
CARD_WAITS_FOR_ROUND = "card_waits_for_round"
# Session key: the Label page has no card because no round has finished yet; the first one redraws it.


PAGE_WAITS_FOR_ROUND_AFTER = "page_waits_for_round_after"
# Session key: a round id (-1: any); the page shown needs a newer cross-validated round (the Model page's
# auto-accept, after a closed check or before any cross-validation): redraw it once when one lands.


def _rerun_waiting_page(newest: dict | None) -> None:
    waits = st.session_state.get(PAGE_WAITS_FOR_ROUND_AFTER)
    if waits is None or newest is None or newest["round_id"] <= waits:
        return
    m = newest["metrics"]
    if m.get("cv_status") == "done" or (m.get("cv_status") is None and m.get("cv_accuracy") is not None):
        st.session_state.pop(PAGE_WAITS_FOR_ROUND_AFTER)
        st.rerun(scope="app")


def _refresh_stale_card(newest: int | None) -> None:
    """A round landed that changes what the Label page's card tells (its suggestion, or an imported
    model's): redraw the page once, so the pinned item keeps its place and shows the newest."""
    ss = st.session_state
    shown = ss.get(CARD_ROUND)
    if shown is None:
        if ss.get(CARD_WAITS_FOR_ROUND) and newest is not None:  # the first round landed: show its first card
            ss.pop(CARD_WAITS_FOR_ROUND)
            st.rerun(scope="app")
        return
    card_round, item, told = shown
    refreshed_for = ss.get("card_refreshed_for")
    if facade.card_is_stale(card_round, newest, refreshed_for):
        ss.card_refreshed_for = newest  # looked at once per round, redrawn or not
        if facade.card_needs_redraw(card_round, told, newest, refreshed_for, lambda: _card_now(item)):
            st.rerun(scope="app")


def _card_now(item: int):
    """What the pinned item's card tells in the newest round, as this session may see it (a session that
    is no longer signed in gets a value that differs from any card: its page redraws to the sign-in)."""
    who = signed_in()
    if who is None:
        return object()
    return facade.card_signature(facade.Session(get_service(), who).card(item))


def _toast_new_round(rid: int | None) -> None:
    ss = st.session_state
    seen = ss.setdefault("round_seen", rid)
    if rid == seen:
        return
    ss.round_seen = rid
    now = time.monotonic()
    if now - ss.get("round_toast_at", -ROUND_TOAST_EVERY_S) >= ROUND_TOAST_EVERY_S:
        ss.round_toast_at = now
        st.toast(f"Model round {rid} is ready; suggestions refreshed")


def sidebar() -> None:
    with st.sidebar:
        if facade.mode(get_service()) == "team":
            ident = identity()
            st.caption(f"Signed in as **{ident.name}** ({ident.role})")
            token = st.session_state.pop("set_cookie", None)
            if token:  # once, right after the sign-in: the browser keeps it as an HttpOnly cookie
                st.html(facade.web_cookie.set_cookie_script(token), unsafe_allow_javascript=True)
            if st.button("Sign out", key="sign_out"):
                facade.end_web_session(get_service(), st.session_state.pop("session_token", None))
                st.session_state.pop("identity", None)
                st.session_state["clear_cookie"] = True
                st.rerun()
        else:
            user = st.text_input("Annotator", value=current_user(), key="user_input",
                                 help="Your name is stored with every label you make (single-user local mode).")
            if user.strip() and user.strip() != st.session_state.get("user"):
                st.session_state["user"] = user.strip()
        sidebar_status()
