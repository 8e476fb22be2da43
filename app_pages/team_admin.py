"""The Data page's Team tab: people, roles, sign-in mode and overlap (admins; the engine checks again)."""
from __future__ import annotations

import streamlit as st

from labeling.session import DASH, ROLES, AuthError, Session


def render(session: Session) -> None:
    if not session.who.allows("admin"):
        st.info("Only an admin manages people and the overlap setting.")
        return
    ss = st.session_state
    if ss.get("team_flash"):
        kind, text = ss.pop("team_flash")
        (st.success if kind == "ok" else st.error)(text)

    def attempt(action, ok: str) -> None:
        try:
            action()
            ss.team_flash = ("ok", ok)
        except (AuthError, LookupError, ValueError) as exc:
            ss.team_flash = ("error", str(exc))

    st.subheader("People")
    people = session.users()
    if people:
        st.dataframe([{k: p[k] for k in ("name", "role", "disabled", "locked", "created_at") if k in p}
                      for p in people], hide_index=True, placeholder=DASH)
    else:
        st.caption("No accounts yet. Add an admin first, then switch to team mode.")
    with st.form("add_user", clear_on_submit=True):
        c = st.columns([2, 2, 1])
        name = c[0].text_input("Name", key="new_user_name")
        password = c[1].text_input("Password", type="password", key="new_user_password")
        role = c[2].selectbox("Role", ROLES, key="new_user_role")
        if st.form_submit_button("Add person"):
            attempt(lambda: session.add_user(name, password, role=role), f"Added {name} as {role}")
            st.rerun()
    names = [p["name"] for p in people]
    if names:
        c = st.columns([2, 2, 1, 1])
        target = c[0].selectbox("Person", names, key="role_user")
        new_role = c[1].selectbox("New role", ROLES, key="role_value")
        if c[2].button("Set role", key="role_set"):
            attempt(lambda: session.set_role(target, new_role), f"{target} is now {new_role}")
            st.rerun()
        disabled = next(p["disabled"] for p in people if p["name"] == target)
        if c[3].button("Enable" if disabled else "Disable", key="role_disable"):
            attempt(lambda: session.set_disabled(target, not disabled),
                    f"{target} is {'enabled' if disabled else 'disabled'}")
            st.rerun()
        locked = [p["name"] for p in people if p.get("locked")]
        if locked:
            st.caption("Locked after too many failed sign-ins (the table's `locked` column): unlocking lets them "
                       "try again.")
            c = st.columns([2, 1, 3])
            who = c[0].selectbox("Locked person", locked, key="unlock_user")
            if c[1].button("Unlock", key="unlock_set"):
                attempt(lambda: session.unlock(who), f"{who} is unlocked and may sign in again")
                st.rerun()

    st.subheader("Sign-in mode")
    mode = session.mode()
    st.caption("Local: one person on their own machine, no password. Team: everyone signs in; labels carry "
               "the signed-in name and roles are enforced.")
    choice = st.radio("Mode", ["local", "team"], index=["local", "team"].index(mode), horizontal=True,
                      key="auth_mode_choice")
    if choice != mode and st.button(f"Switch to {choice} mode", key="auth_mode_set"):
        attempt(lambda: session.set_mode(choice), f"The project is in {choice} mode")
        st.rerun()

    st.subheader("Overlap")
    fraction, votes = session.overlap_settings()
    st.caption("A share of the items goes to several annotators, who do not see each other's labels on them "
               "until they have voted; the Review page measures their agreement.")
    c = st.columns([3, 1, 1])
    new_fraction = c[0].slider("Share of items labeled by several people", 0, 50, int(round(fraction * 100)),
                               format="%d%%", key="overlap_fraction")
    new_votes = c[1].number_input("Votes per item", 2, 5, votes, key="overlap_votes")
    if c[2].button("Save overlap", key="overlap_save"):
        attempt(lambda: session.set_overlap(new_fraction / 100, int(new_votes)),
                f"{new_fraction}% of items now go to {int(new_votes)} people")
        st.rerun()
