"""A project's team figures in one JSON-ready dict: agreement, consensus, throughput, precision by source.

Shown on the Review page and printed by ``python -m labeling stats DIR [--format json]``.
"""
from __future__ import annotations

from collections import Counter

from labeling import agreement
from labeling.project import Project
from storage import labels as labels_q


def project_stats(project: Project) -> dict:
    """Everything the Review page's Agreement tab shows; class and people names, never ids."""
    from labeling.review import source_precision

    with project.db.session() as con:
        names = dict(labels_q.classes(con))
        raw = labels_q.votes(con)
        settled = labels_q.adjudications(con)
        batches = labels_q.recent_batches(con, limit=1_000_000)
    votes = [(int(r[0]), r[1], names.get(r[2], str(r[2]))) for r in raw]
    per_item = Counter(v[0] for v in votes)
    by_item: dict[int, set] = {}
    for item, _, label in votes:
        by_item.setdefault(item, set()).add(label)
    labels, confusion = agreement.confusion_between_annotators(votes)
    throughput = agreement.labels_per_hour(
        [(b["user"], b["created_at"], b["items"]) for b in batches
         if not b["undone"] and b["source"] not in ("import", "merge")])
    fleiss = agreement.fleiss_kappa(votes)
    return {
        "items_voted": len(per_item),
        "items_with_several_votes": sum(1 for n in per_item.values() if n >= 2),
        "items_in_dispute": sum(1 for item, ls in by_item.items() if len(ls) > 1),
        "items_adjudicated": len(settled),
        "annotators": sorted({v[1] for v in votes}),
        "pairwise_kappa": agreement.pairwise_kappa(votes),
        "fleiss_kappa": fleiss["kappa"],
        "fleiss_items": fleiss["items"],
        "fleiss_raters": fleiss["raters"],
        "krippendorff_alpha": agreement.krippendorff_alpha(votes),
        "agreement_with_consensus": agreement.agreement_with_consensus(votes),
        "confusion": {"labels": [str(x) for x in labels], "matrix": confusion.tolist()},
        "labels_per_hour": throughput,
        "source_precision": source_precision(project),
    }


def format_text(stats: dict) -> str:
    """The same figures as a short plain-text report."""
    def num(x):
        return "-" if x is None else f"{x:.3f}"

    lines = [f"items voted {stats['items_voted']} · with several votes {stats['items_with_several_votes']} · "
             f"in dispute {stats['items_in_dispute']} · adjudicated {stats['items_adjudicated']}",
             f"Fleiss' kappa {num(stats['fleiss_kappa'])} ({stats['fleiss_items']} items) · "
             f"Krippendorff's alpha {num(stats['krippendorff_alpha'])}", "", "pairwise Cohen's kappa:"]
    lines += [f"  {p['a']} / {p['b']}: {num(p['kappa'])} on {p['items']} items" for p in stats["pairwise_kappa"]]
    lines += ["", "agreement with the others' majority, labels per hour:"]
    for who in stats["annotators"]:
        a = stats["agreement_with_consensus"].get(who, {})
        t = stats["labels_per_hour"].get(who, {})
        lines.append(f"  {who}: {num(a.get('agreement'))} on {a.get('items', 0)} items · "
                     f"{num(t.get('labels_per_hour'))} labels/hour")
    if stats["source_precision"]:
        lines += ["", "precision by source (audits):"]
        lines += [f"  {s}: {num(v['precision'])} ({v['confirmed']}/{v['checked']})"
                  for s, v in stats["source_precision"].items()]
    return "\n".join(lines)
