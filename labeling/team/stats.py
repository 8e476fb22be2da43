"""A project's team figures in one JSON-ready dict: agreement, consensus, throughput, precision by source.

Shown on the Review page and printed by ``python -m labeling stats DIR [--format json]``. The figures are
the pure functions of :mod:`labeling.team.agreement` applied to the votes, adjudications and events read in
one short transaction.
"""
from __future__ import annotations

from collections import Counter

from labeling.team import agreement
from labeling.project import Project
from storage import labels as labels_q

NOT_HUMAN_WORK = frozenset({"import", "merge", "auto_accept"})
"""Event sources that are not a person labeling at that moment: left out of labels per hour."""


def _throughput_rows(events: list[labels_q.EventRow]) -> list[tuple]:
    """(annotator, created_at, labels delivered) per event of a person's own work.

    Every label, skip and undo takes time; only labels that are still live count as labels.
    """
    undone = {e.revokes for e in events if e.kind == "undo"}
    return [(e.user_name, e.created_at, int(e.kind == "label" and e.batch_id not in undone))
            for e in events if e.source not in NOT_HUMAN_WORK]


def project_stats(project: Project, *, idle_s: float = agreement.IDLE_S) -> dict:
    """Everything the Review page's Agreement tab shows, as plain JSON types; class and people names, never ids.

    Keys
    ----
    items_voted, items_with_several_votes, items_in_dispute (several votes, not all the same class),
    items_adjudicated; annotators; pairwise_kappa [{a, b, items, kappa, agreement}]; fleiss_kappa,
    fleiss_items, fleiss_raters, fleiss_left_out; krippendorff_alpha (+ krippendorff_items, the items with
    two votes or more); agreement_with_consensus {annotator: {items, agreement}}; confusion {labels,
    matrix}; labels_per_hour {annotator: {labels, events, active_hours, labels_per_hour}} with
    idle_cap_s; source_precision {source: {labels, checked, by_reviewer, by_votes, confirmed, precision}}.
    """
    with project.db.session() as con:
        names = dict(labels_q.classes(con))
        raw_votes = labels_q.votes(con)
        settled = labels_q.adjudications(con)
        events = labels_q.all_events(con)

    def name(class_id):
        return names.get(class_id, str(class_id))

    votes = [(int(r.item_id), r.user_name, name(r.class_id)) for r in raw_votes]
    sourced = [(int(r.item_id), r.user_name, name(r.class_id), r.source) for r in raw_votes]
    verdicts = {int(r.item_id): name(r.class_id) for r in settled if r.kind == "label"}

    per_item = Counter(v[0] for v in votes)
    classes_per_item: dict[int, set] = {}
    for item, _, label in votes:
        classes_per_item.setdefault(item, set()).add(label)
    labels, confusion = agreement.confusion_between_annotators(votes)
    fleiss = agreement.fleiss_kappa(votes)
    several = sum(1 for n in per_item.values() if n >= 2)
    return {
        "items_voted": len(per_item),
        "items_with_several_votes": several,
        "items_in_dispute": sum(1 for ls in classes_per_item.values() if len(ls) > 1),
        "items_adjudicated": len(settled),
        "annotators": sorted({v[1] for v in votes}),
        "pairwise_kappa": agreement.pairwise_kappa(votes),
        "fleiss_kappa": fleiss["kappa"],
        "fleiss_items": fleiss["items"],
        "fleiss_raters": fleiss["raters"],
        "fleiss_left_out": fleiss["left_out"],
        "krippendorff_alpha": agreement.krippendorff_alpha(votes),
        "krippendorff_items": several,
        "agreement_with_consensus": agreement.agreement_with_consensus(votes),
        "confusion": {"labels": [str(x) for x in labels], "matrix": confusion.tolist()},
        "labels_per_hour": agreement.labels_per_hour(_throughput_rows(events), idle_s=idle_s),
        "idle_cap_s": idle_s,
        "source_precision": agreement.source_precision(sourced, verdicts),
    }


def format_text(stats: dict) -> str:
    """The same figures as a short plain-text report."""
    def num(x):
        return "-" if x is None else f"{x:.3f}"

    lines = [f"items voted {stats['items_voted']} · with several votes {stats['items_with_several_votes']} · "
             f"in dispute {stats['items_in_dispute']} · adjudicated {stats['items_adjudicated']}",
             f"Fleiss' kappa {num(stats['fleiss_kappa'])} ({stats['fleiss_items']} items with "
             f"{stats['fleiss_raters'] or '-'} votes) · Krippendorff's alpha {num(stats['krippendorff_alpha'])} "
             f"({stats['krippendorff_items']} items)", "", "pairwise Cohen's kappa:"]
    lines += [f"  {p['a']} / {p['b']}: {num(p['kappa'])} on {p['items']} items" for p in stats["pairwise_kappa"]]
    lines += ["", f"agreement with the others' majority, labels per active hour (gaps capped at "
                  f"{stats['idle_cap_s']:.0f} s):"]
    for who in sorted(set(stats["annotators"]) | set(stats["labels_per_hour"])):
        a = stats["agreement_with_consensus"].get(who, {})
        t = stats["labels_per_hour"].get(who, {})
        lines.append(f"  {who}: {num(a.get('agreement'))} on {a.get('items', 0)} items · "
                     f"{num(t.get('labels_per_hour'))} labels/hour ({t.get('labels', 0)} labels)")
    if stats["source_precision"]:
        lines += ["", "precision by source (checked by a reviewer or by other people's votes):"]
        lines += [f"  {s}: {num(v['precision'])} ({v['confirmed']}/{v['checked']} checked of {v['labels']} labels)"
                  for s, v in stats["source_precision"].items()]
    return "\n".join(lines)


def report(service) -> dict:
    """The project's figures as the Python API's ``stats`` and ``stats --format json`` give them: items,
    labels, classes and the round in use, with the team's agreement under ``team``."""
    return {**service.summary(), "team": project_stats(service.project)}
