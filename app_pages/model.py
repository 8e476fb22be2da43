"""Model: round history, cross-validated quality, calibration, the retrain loop, and auto-accept."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from labeling.session import DASH, Candidate, count
from app_pages.common import PAGE_WAITS_FOR_ROUND_AFTER, get_session, get_worker

AUDIT_N = 12
AUDIT_COLUMNS = 6
CHECK_PAGE = 12


def _accept(candidates: list[Candidate], round_id: int) -> None:
    """Button callback: write exactly the previewed items as one batch."""
    try:
        done = get_session().model.accept(candidates, model_round=round_id)
    except ValueError as exc:
        st.session_state["aa_message"] = ("error", str(exc))
        return
    st.session_state["aa_batch"] = done.batch_id
    note = f" ({len(done.skipped)} left out: decided meanwhile)" if done.skipped else ""
    st.session_state["aa_message"] = ("success", f"Accepted {count(len(done.item_ids), 'item')} as one batch{note}.")
    st.session_state["aa_checked"] = False


def _undo(batch_id: str) -> None:
    """Button callback: revoke the whole auto-accept batch."""
    try:
        items = get_session().undo(batch_id)
    except LookupError as exc:
        st.session_state["aa_message"] = ("error", str(exc))
    else:
        # auto-accept only ever labels unlabeled items, so its undo leaves them unlabeled
        verb = "is" if len(items) == 1 else "are"
        st.session_state["aa_message"] = ("info", f"Undone: {count(len(items), 'item')} {verb} unlabeled again.")
    st.session_state.pop("aa_batch", None)


def _certify(action: str, *args) -> None:
    """Button callbacks of the checked-sample route: start, record a page of checks, accept, close."""
    model = get_session().model
    try:
        if action == "start":
            cert = model.start_certification(args[0])
            st.session_state["cert_message"] = ("info", f"Check these {len(cert.sample)} items, drawn at random "
                                                        "from the batch: tick the wrong ones.")
        elif action == "record":
            ticked = [i for i in args[0] if st.session_state.get(f"cert_wrong_{i}")]
            model.record_checks(right=[i for i in args[0] if i not in ticked], wrong=ticked)
        elif action == "accept":
            done = model.accept_certified()
            st.session_state["aa_batch"] = done.batch_id
            note = f" ({len(done.skipped)} left out: decided meanwhile)" if done.skipped else ""
            st.session_state["aa_message"] = ("success", f"Accepted {count(len(done.item_ids), 'item')} as one "
                                                         f"batch{note}.")
        else:
            model.cancel_certification()
    except ValueError as exc:
        st.session_state["cert_message"] = ("error", str(exc))


def _pct(x) -> str:
    return "—" if x is None or x != x else f"{x:.1%}"


session = get_session()
model = session.model
st.title("Model")

# ---- the round in use and the retrain loop ---------------------------------------------------
failed = model.failed_after_current()
if failed is not None:
    in_use = f"round {failed['in_use']} stays in use" if failed["in_use"] is not None else "no round is in use yet"
    st.warning(f"Round {failed['id']} failed: {failed['error']}. The previous model is kept: {in_use}.")

summary = model.summary()
rnd = summary["round"]
cols = st.columns(4)
if rnd is None:
    st.info("No model round has finished yet.")
else:
    m = rnd["metrics"]
    cols[0].metric("Round in use", rnd["round_id"])
    cols[1].metric("Labels used", rnd["labels"])
    rests_on = None
    if m.get("cv_labels"):
        rests_on = (f"On {m['cv_labels']} held-out human labels: {m.get('cv_folds', '?')} folds, each trained on "
                    f"about {float(m.get('cv_train_labels', m['cv_labels'])):.0f} labels.")
    cols[2].metric("Cross-validated accuracy", _pct(m.get("cv_accuracy")), help=rests_on)
    cols[3].metric("Calibration error (ECE)", "—" if m.get("ece") is None else f"{m['ece']:.3f}", help=rests_on)
    if rests_on:
        st.caption(rests_on + (" Few labels: each figure is uncertain by several points." if m["cv_labels"] < 100
                               else ""))
    if m.get("knn_weight") is not None:
        st.caption(f"Blend: neighbour propagation {m['knn_weight']:.0%} of the suggestion, the heads the rest.")
    if m.get("cv_note"):
        st.caption(m["cv_note"])
    elif m.get("cv_status") == "pending":
        st.caption("Cross-validating this round in the background: its held-out figures show here when ready.")

worker = get_worker()
st.subheader("Retraining")
controls = st.columns([1, 1, 1, 3])
no_worker = worker is None
# Callbacks run before the next rerun, so the buttons' disabled state already shows the new state.
controls[0].button("Pause", key="model_pause", disabled=no_worker or worker.paused,
                   on_click=None if no_worker else worker.pause)
controls[1].button("Resume", key="model_resume", disabled=no_worker or not worker.paused,
                   on_click=None if no_worker else worker.resume)
controls[2].button("Train now", key="model_trigger", disabled=no_worker,
                   on_click=None if no_worker else worker.trigger)
if no_worker:
    controls[3].caption("The retrain loop is not running in this server (started with QUORUM_WORKER=0); "
                        "train from the command line with `python -m labeling train`.")
else:
    s = worker.status
    controls[3].caption(f"State: {s.state} · {s.rounds_trained} rounds trained here"
                        + (f" · {s.pending_events} new events" if s.pending_events else ""))

imported = model.imported_models()
if imported:
    st.subheader("Imported models")
    st.caption("Your own models' predictions (Data page, or `import-predictions`) join each round as ensemble "
               "members. Auto: the share is learned from the model's accuracy on the human labels, which it never "
               "saw, against the heads' cross-validated accuracy; a number fixes it; off leaves the model out.")
    st.dataframe(imported, key="model_imported", hide_index=True, placeholder=DASH,
                 column_order=("model", "weight", "share", "accuracy", "checked_on", "items", "classes", "source",
                               "imported_by"),
                 column_config={"share": st.column_config.NumberColumn("share in the newest round", format="percent"),
                                "accuracy": st.column_config.NumberColumn("accuracy on human labels", format="percent"),
                                "checked_on": st.column_config.NumberColumn("labels checked on")})
    w = st.columns([2, 2, 2, 1])
    chosen = w[0].selectbox("Model", [m["model"] for m in imported], key="model_weigh_name")
    how = w[1].radio("Weight", ["auto", "fixed", "off"], key="model_weigh_how", horizontal=True)
    share = w[2].slider("Fixed share", 0.0, 1.0, 0.5, 0.05, key="model_weigh_share", disabled=how != "fixed")
    if w[3].button("Apply", key="model_weigh_apply", disabled=how is None):
        try:
            model.set_model_weight(chosen, share if how == "fixed" else how)
        except (ValueError, LookupError, PermissionError) as exc:
            st.error(str(exc))
        else:
            if worker is not None:
                worker.trigger()
            st.success(f"“{chosen}”: weight {share if how == 'fixed' else how}; the next round uses it.")

st.subheader("Round history")
history = model.round_history()
st.dataframe(history.iloc[::-1], key="model_history", hide_index=True,
             column_config={"cv_accuracy": st.column_config.NumberColumn("CV accuracy", format="percent"),
                            "ece": st.column_config.NumberColumn("ECE", format="%.3f"),
                            "seconds": st.column_config.NumberColumn("seconds", format="%.1f")}, placeholder=DASH)

# ---- quality on human labels -----------------------------------------------------------------
st.subheader("Per-class precision and recall")
st.caption("Cross-validated on human labels: each labeled item is predicted by a model trained without it.")
per_class = model.per_class_report()
if per_class.empty:
    st.info("Needs a round trained on at least two labels in each of two classes.")
else:
    left, right = st.columns(2)
    left.dataframe(per_class.drop(columns=["class_id"]), key="model_per_class", hide_index=True,
                   column_config={"precision": st.column_config.NumberColumn(format="percent"),
                                  "recall": st.column_config.NumberColumn(format="percent")}, placeholder=DASH)
    bars = go.Figure([go.Bar(name="precision", x=per_class["class"], y=per_class["precision"]),
                      go.Bar(name="recall", x=per_class["class"], y=per_class["recall"])])
    bars.update_layout(barmode="group", yaxis_range=[0, 1], height=320, margin=dict(t=10, b=10))
    right.plotly_chart(bars, key="model_per_class_chart")

    st.subheader("Reliability")
    rel = model.reliability(n_bins=10)
    fig = go.Figure([
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dash", color="grey")),
        go.Scatter(x=rel["confidence"], y=rel["accuracy"], mode="lines+markers", name="model",
                   customdata=rel["count"], hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}"
                                                          "<br>%{customdata} items<extra></extra>"),
    ])
    fig.update_layout(xaxis_title="mean confidence", yaxis_title="accuracy", xaxis_range=[0, 1],
                      yaxis_range=[0, 1], height=360, margin=dict(t=10, b=10))
    st.plotly_chart(fig, key="model_reliability_chart")

# ---- auto-accept -----------------------------------------------------------------------------
st.subheader("Auto-accept")
message = st.session_state.pop("aa_message", None)
if message is not None:
    getattr(st, message[0])(message[1])
if st.session_state.get("aa_batch"):
    st.button("Undo this batch", key="aa_undo", on_click=_undo, args=(st.session_state["aa_batch"],))

target = st.slider("Target precision", min_value=0.5, max_value=0.99, value=0.95, step=0.01, key="aa_target",
                   help="Thresholds are chosen so that a one-sided 95 % lower confidence bound (Clopper-Pearson) on "
                        "the precision of the held-out human labels they accept reaches this target. A class with "
                        "fewer than 5 held-out labels gets no threshold.")
plan = model.auto_accept_plan(target_precision=target, min_support=5)
if plan is None:
    st.info("Auto-accept needs a round with cross-validated human labels.")
else:
    st.dataframe(plan.thresholds.drop(columns=["class_id"]), key="aa_thresholds", hide_index=True,
                 column_config={"threshold": st.column_config.NumberColumn(format="%.3f"),
                                "held_out": st.column_config.NumberColumn("held-out labels"),
                                "support": st.column_config.NumberColumn("held-out above"),
                                "precision": st.column_config.NumberColumn("held-out precision", format="percent"),
                                "lower": st.column_config.NumberColumn("95 % lower", format="percent"),
                                "upper": st.column_config.NumberColumn("95 % upper", format="percent")}, placeholder=DASH)
    a, b = st.columns(2)
    a.metric("Would be accepted", len(plan.candidates))
    b.metric("Precision at least", _pct(plan.estimated_precision),
             help="The 95 % lower confidence bound on the precision of what is accepted, from held-out human labels.")
    if plan.bound is None:
        st.caption(f"No class reaches {target:.0%} with {plan.held_out} held-out human labels: the bound needs more "
                   "labels (or a lower target).")
    else:
        st.caption(f"Precision at least {plan.interval[0]:.1%} (one-sided 95 % bound; 90 % interval "
                   f"{plan.interval[0]:.1%}–{plan.interval[1]:.1%}) on {plan.support} held-out human labels above "
                   f"the thresholds, of {plan.held_out} held out.")
    if plan.candidates:
        st.caption(f"Audit sample: {min(AUDIT_N, len(plan.candidates))} of {len(plan.candidates)} proposals, every "
                   "class and each one's least confident items (where a wrong label hides). Check them before "
                   "accepting.")
        sample = model.audit(plan, n=AUDIT_N, seed=plan.round_id)
        grid = st.columns(AUDIT_COLUMNS)
        for k, card in enumerate(sample):
            with grid[k % AUDIT_COLUMNS]:
                st.image(card["image"], width="stretch")
                shown = card["confidence"] if card.get("calibrated") is None else card["calibrated"]
                st.text(f"{card['class']} · {shown:.0%}")
        checked = st.checkbox("I checked the audit sample", key="aa_checked")
        st.button(f"Accept {count(len(plan.candidates), 'item')} as one batch", key="aa_accept", type="primary",
                  disabled=not checked, on_click=_accept, args=(plan.candidates, plan.round_id))
    else:
        st.caption("No unlabeled item clears its class threshold at this target.")

# ---- auto-accept certified by a checked sample ------------------------------------------------
st.markdown("##### Or certify a batch by checking a sample")
message = st.session_state.pop("cert_message", None)
if message is not None:
    getattr(st, message[0])(message[1])
cert = model.certification()
if cert is None or cert.state in ("accepted", "closed"):
    proposal = model.certify_proposal(target=target)
    if proposal is None:
        st.caption("Needs a round with cross-validated human labels (this page shows it when one lands).")
        st.session_state[PAGE_WAITS_FOR_ROUND_AFTER] = -1
    elif cert is not None and cert.state == "closed" and cert.round_id == proposal.round_id:
        st.caption(f"Round {cert.round_id} already had its sample checked: one try per round keeps the 95 % promise. "
                   "Label the items found wrong; the next round can be checked again (this page shows it when it "
                   "lands).")
        st.session_state[PAGE_WAITS_FOR_ROUND_AFTER] = cert.round_id
    elif not proposal.batch:
        st.caption(f"No batch worth checking at {target:.0%}: the round's most confident suggestions are not yet "
                   "clean enough for a random sample of them to come back flawless.")
    else:
        st.caption(f"Check {proposal.audit} of the round's {len(proposal.batch)} most confident proposals, drawn at "
                   f"random. If every one is right, the other {proposal.accepted_if_flawless} are at least "
                   f"{proposal.bound:.1%} right (exact one-sided 95 % bound) and can be accepted as one batch; one "
                   f"wrong item and nothing is accepted. Chance that all are right, from the calibrated "
                   f"confidences: about {proposal.chance:.0%}.")
        st.button(f"Check {count(proposal.audit, 'item')} to certify {proposal.accepted_if_flawless}",
                  key="cert_start", on_click=_certify, args=("start", proposal))
else:
    done = len(cert.right) + len(cert.wrong)
    st.progress(done / len(cert.sample), text=f"{done} of {len(cert.sample)} checked · {len(cert.wrong)} wrong · "
                                              f"batch of {len(cert.batch)} from round {cert.round_id}, target "
                                              f"{cert.target:.0%}, started by {cert.started_by}")
    if cert.state == "checking":
        page = cert.todo[:CHECK_PAGE]
        with st.form("cert_checks"):
            grid = st.columns(AUDIT_COLUMNS)
            for k, card in enumerate(model.check_cards(cert, page)):
                with grid[k % AUDIT_COLUMNS]:
                    st.image(card["image"], width="stretch")
                    st.checkbox(f"not {card['class']}", key=f"cert_wrong_{card['item_id']}")
            st.form_submit_button(f"Record: {count(len(page), 'item')} checked, the ticked ones wrong",
                                  on_click=_certify, args=("record", page), type="primary")
        st.caption("Unticked items get their proposed class as your label; ticked ones stay unlabeled for the "
                   "Label page. A label given there counts as a check too.")
    elif cert.state == "failed":
        st.warning(f"Not certified: {len(cert.wrong)} of the {done} checked items were wrong, so nothing is "
                   "accepted unseen. Label more, or try a higher target, then check a new sample.")
    else:
        st.success(f"Certified: all {len(cert.sample)} checks were right, so the other {len(cert.rest)} are at "
                   f"least {cert.bound:.1%} right (one-sided 95 %).")
        st.button(f"Accept {count(len(cert.rest), 'item')} as one batch", key="cert_accept", type="primary",
                  on_click=_certify, args=("accept",))
    st.button("Close this check" if cert.state == "failed" else "Cancel", key="cert_cancel",
              on_click=_certify, args=("cancel",),
              help="Its round gets no other sample: drawing again until one comes back flawless would break the promise.")
