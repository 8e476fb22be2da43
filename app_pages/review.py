"""Review (reviewers and admins): conflicts, suspected label errors, audits of bulk batches, agreement, batches."""
from __future__ import annotations

import os

import streamlit as st

from labeling.session import DASH, AuthError, count, vote_standing
from app_pages.common import done, get_session, plain

PAGE = 12

session = get_session()
review = session.review
ss = st.session_state
st.title("Review")
if not session.who.allows("reviewer"):
    st.error("The Review page needs the reviewer role.")
    done()
if ss.get("review_flash"):
    st.toast(ss.pop("review_flash"))

classes = session.class_names()


def _settle(item_ids: list[int], label: str | None, note: str) -> None:
    """Button callback: write the adjudication (the engine checks the role again)."""
    try:
        get_session().adjudicate(item_ids, label)
        ss.review_flash = note
    except (AuthError, LookupError, ValueError) as exc:
        ss.review_flash = f"Not saved: {exc}"


def _thumb(row: dict) -> None:
    """The item's image, large enough to judge (the full image, scaled to its column; the thumbnail when
    the file is gone)."""
    shown = get_session().display_image(row["image"]) if row.get("image") else None  # a large photo: its preview
    if shown is not None and shown.problem is None:
        st.image(shown.path, width="stretch", output_format=shown.format)
    elif row.get("thumb") and os.path.exists(row["thumb"]):
        st.image(row["thumb"], width="stretch")
    elif shown is not None:
        st.caption(shown.problem)
    st.caption(row.get("uri") or f"item {row['item_id']}")


def _agreement() -> None:
    import plotly.express as px

    stats = review.stats()
    m = st.columns(4)
    m[0].metric("Items with several votes", stats["items_with_several_votes"])
    m[1].metric("In dispute", stats["items_in_dispute"])
    m[2].metric("Fleiss' kappa", "–" if stats["fleiss_kappa"] is None else f"{stats['fleiss_kappa']:.3f}",
                help=f"On the {stats['fleiss_items']} items with {stats['fleiss_raters']} votes each")
    m[3].metric("Krippendorff's alpha",
                "–" if stats["krippendorff_alpha"] is None else f"{stats['krippendorff_alpha']:.3f}")
    if not stats["items_with_several_votes"]:
        st.info("Agreement needs items labeled by several people: set an overlap on the Data page (Team).")
    if stats["pairwise_kappa"]:
        st.subheader("Cohen's kappa per pair")
        st.dataframe([{"annotator": p["a"], "other": p["b"], "shared items": p["items"],
                       "kappa": round(p["kappa"], 3), "raw agreement": round(p["agreement"], 3)}
                      for p in stats["pairwise_kappa"]], hide_index=True, placeholder=DASH)
    people = [{"annotator": w, "agreement with the others": a["agreement"], "items": a["items"]}
              for w, a in stats["agreement_with_consensus"].items()]
    c = st.columns(2)
    if people:
        c[0].plotly_chart(px.bar(people, x="annotator", y="agreement with the others", hover_data=["items"],
                                 range_y=[0, 1], title="Agreement with the others' majority"), key="chart_agree")
    speed = [{"annotator": w, "labels per hour": t["labels_per_hour"] or 0, "labels": t["labels"]}
             for w, t in stats["labels_per_hour"].items()]
    if speed:
        c[1].plotly_chart(px.bar(speed, x="annotator", y="labels per hour", hover_data=["labels"],
                                 title="Labels per active hour"), key="chart_speed")
    conf = stats["confusion"]
    if conf["labels"] and len(conf["labels"]) > 1:
        st.plotly_chart(px.imshow(conf["matrix"], x=conf["labels"], y=conf["labels"], text_auto=True,
                                  labels={"x": "one annotator", "y": "another", "color": "pairs"},
                                  title="Confusion between annotators (pairs of votes on one item)"),
                        key="chart_confusion")
    if stats["source_precision"]:
        st.plotly_chart(px.bar([{"source": s, "precision": v["precision"] or 0, "checked": v["checked"]}
                                for s, v in stats["source_precision"].items()], x="source", y="precision",
                               hover_data=["checked"], range_y=[0, 1], title="Precision by source (checked by a reviewer or by other annotators)"),
                        key="chart_precision")
    st.caption("The same figures: python -m labeling stats DIR --format json")


tabs = st.tabs(["Disagreements", "Suspected errors", "Audits", "Agreement", "Batches"])

with tabs[0]:
    conflicts = review.disagreements()
    st.caption(f"{count(len(conflicts), 'item')} where annotators disagree and no reviewer has settled it, "
               "most contested first. Settling writes an adjudication that overrides the votes.")
    for d in conflicts[:PAGE]:
        c = st.columns([2, 3, 2])
        with c[0]:
            _thumb(d)
        with c[1]:
            st.text(" · ".join(f"{u}: {cls} ({src})" for u, cls, src in d["votes"]))
            st.caption(plain(vote_standing(d["tally"], d["current"])))
        with c[2]:
            for cls in sorted(d["tally"]):
                st.button(f"Settle as {plain(cls)}", key=f"settle_{d['item_id']}_{cls}", on_click=_settle,
                          args=([d["item_id"]], cls, f"Settled item {d['item_id']} as {cls}"))
            other = st.selectbox("Other class", classes, index=None, key=f"settle_other_{d['item_id']}",
                                 label_visibility="collapsed", placeholder="Another class…")
            if other:
                st.button(f"Settle as {plain(other)}", key=f"settle_{d['item_id']}_other", on_click=_settle,
                          args=([d["item_id"]], other, f"Settled item {d['item_id']} as {other}"))

    with st.expander("Model-weighted consensus (CROWDLAB-style)"):
        st.caption("Weighs each annotator by their agreement with the others and the model by its accuracy, "
                   "instead of counting votes. Applying it writes adjudications by model-consensus, one batch "
                   "per class, which can be undone from the Batches tab.")
        result, names, current = review.model_weighted()
        differs = [(i, names[c]) for i, c in zip(result.item_ids.tolist(), result.labels.tolist())
                   if i in current and current[i] != c]
        if result.annotator_weight:
            st.dataframe([{"annotator": a, "agreement": round(result.annotator_agreement[a], 3),
                           "weight": round(w, 3)} for a, w in sorted(result.annotator_weight.items())],
                         hide_index=True, placeholder=DASH)
            st.caption(f"Model weight {result.model_weight:.2f}; {len(differs)} item(s) differ from the majority.")

        def _apply() -> None:
            try:
                _, items = review.apply_model_weighted()
                ss.review_flash = f"Applied the model-weighted consensus to {len(items)} item(s)"
            except (AuthError, LookupError, ValueError) as exc:
                ss.review_flash = f"Not applied: {exc}"
        st.button("Apply to items with several votes", key="apply_consensus", on_click=_apply,
                  disabled=not differs)

with tabs[1]:
    suspects = review.suspected_errors()
    st.caption(f"{count(len(suspects), 'human label')} contradicted by a confident held-out ensemble prediction and "
               "by the item's labeled neighbours (confident learning with leave-one-out kNN), most likely first.")
    pages = max(1, -(-len(suspects) // PAGE))
    at = min(int(ss.get("suspects_page", 0)), pages - 1)
    ss.suspects_page = at
    if pages > 1:
        nav = st.columns([1, 1, 4])
        nav[0].button("Previous", key="suspects_prev", disabled=at == 0,
                      on_click=lambda: ss.update(suspects_page=max(0, ss.suspects_page - 1)))
        nav[1].button("Next", key="suspects_next", disabled=at >= pages - 1,
                      on_click=lambda: ss.update(suspects_page=ss.suspects_page + 1))
        nav[2].caption(f"Page {at + 1} of {pages}: suspects {at * PAGE + 1}-{min(len(suspects), (at + 1) * PAGE)} "
                       f"of {len(suspects)}. The same list: python -m labeling suspects DIR --format json")
    for s in suspects[at * PAGE:(at + 1) * PAGE]:
        c = st.columns([2, 3, 2])
        with c[0]:
            _thumb(s)
        with c[1]:
            st.text(f"Labeled {s['label']} by {s['labeled_by']} ({s['source']})")
            st.caption(f"Ensemble: {plain(s['suggested'])} at {s['confidence']:.0%} (typical {s['threshold']:.0%}); "
                       f"neighbours disagree {s['neighbour_disagreement']:.0%}")
        with c[2]:
            st.button(f"Change to {plain(s['suggested'])}", key=f"fix_{s['item_id']}", type="primary", on_click=_settle,
                      args=([s["item_id"]], s["suggested"], f"Item {s['item_id']} is now {s['suggested']}"))
            st.button(f"Keep {plain(s['label'])}", key=f"keep_{s['item_id']}", on_click=_settle,
                      args=([s["item_id"]], s["label"], f"Kept {s['label']} on item {s['item_id']}"))

with tabs[2]:
    batches = review.audits()
    st.caption("A fixed random sample of each bulk or automatic batch. Confirm or correct each sampled item; "
               "the share confirmed estimates the batch's precision.")
    if not batches:
        st.info("No bulk or automatic batches yet.")
    for a in batches[:PAGE]:
        est = "not audited yet" if a["precision"] is None else f"precision {a['precision']:.0%} of {a['checked']}"
        what = "labeled one by one" if ":" in a["batch_id"] else f"as {plain(a['label'])}"
        with st.expander(f"{a['source']} · {a['items']} items {what} by {plain(a['user'])} · {est}"):
            todo = a["todo"][:6]
            if not todo:
                st.success("Every sampled item is checked.")
            info = {r["item_id"]: r for r in [{"item_id": i} for i in todo]}
            review.attach_uris(list(info.values()))
            labels_now = review.current_labels()
            cols = st.columns(6)
            for k, item in enumerate(todo):
                with cols[k % 6]:
                    _thumb(info[item])
                    given = labels_now.get(item, (None,))[0]
                    st.button("Correct", key=f"audit_ok_{a['batch_id']}_{item}", on_click=_settle,
                              args=([item], given, f"Confirmed item {item}"), disabled=given is None)
                    fix = st.selectbox("Should be", [c for c in classes if c != given], index=None,
                                       key=f"audit_fix_{a['batch_id']}_{item}", placeholder="Should be…",
                                       label_visibility="collapsed")
                    if fix:
                        st.button(f"Fix → {plain(fix)}", key=f"audit_fixbtn_{a['batch_id']}_{item}", on_click=_settle,
                                  args=([item], fix, f"Item {item} is now {fix}"))
    precision = review.source_precision()
    if precision:
        st.subheader("Measured precision by source")
        st.dataframe([{"source": s, **v} for s, v in precision.items()], hide_index=True, placeholder=DASH)

with tabs[3]:
    _agreement()

with tabs[4]:
    st.caption("Every label batch, newest first. Reviewers may undo anyone's batch; the undo is itself an event.")
    for b in session.batches(limit=30):
        c = st.columns([4, 1])
        state = "undone" if b["undone"] else "live"
        c[0].text(f"{b['created_at']:%Y-%m-%d %H:%M:%S} · {b['user']} · {b['source']} · {count(b['items'], 'item')} · "
                  f"{b['classes']} · {state}")
        if not b["undone"]:
            def _undo(batch=b["batch_id"]) -> None:
                try:
                    n = len(get_session().undo(batch))
                    ss.review_flash = f"Undid {count(n, 'label')}: each item is back to what it was before"
                except (AuthError, LookupError) as exc:
                    ss.review_flash = f"Not undone: {exc}"
            c[1].button("Undo", key=f"undo_batch_{b['batch_id']}", on_click=_undo)
