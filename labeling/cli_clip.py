"""The command line's commands for the backbones of the field: ``search`` (images by text, CLIP), ``prompts``
(each class's zero-shot prompt) and ``compare-backbones`` (pick a backbone by measurement). Registered on the
main parser by :func:`labeling.cli.build_parser`."""
from __future__ import annotations

from labeling.cli import _fmt_arg, _print


def register(sub) -> None:
    s = sub.add_parser("search", help="images ranked by a text query (needs a CLIP backbone)")
    s.add_argument("dir")
    s.add_argument("query", help='what to look for, e.g. "a red car"')
    s.add_argument("--n", type=int, default=50, help="how many (default 50)")
    _fmt_arg(s)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("prompts", help="each class's zero-shot text prompt (CLIP backbones); set or reset one")
    s.add_argument("dir")
    s.add_argument("cls", nargs="?", metavar="CLASS", help="the class to set the prompt of")
    s.add_argument("--prompt", help='the new prompt, e.g. "a close-up photo of a {name}"; empty: the default')
    _fmt_arg(s)
    s.set_defaults(func=cmd_prompts)

    s = sub.add_parser("compare-backbones",
                       help="embed a sample with each backbone available here and compare them: label-free quality "
                            "(effective rank, kNN agreement) and, with labels, the learner's cross-validated accuracy")
    s.add_argument("dir")
    s.add_argument("--backbones", help="comma-separated names (default: every backbone whose weights are here)")
    s.add_argument("--sample", type=int, default=500, help="items embedded per backbone (default 500)")
    s.add_argument("--weights", action="append", default=[], metavar="NAME=FILE",
                   help="a weights file for one backbone (repeatable); 'none' for random weights")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _fmt_arg(s)
    s.set_defaults(func=cmd_compare_backbones)


def cmd_search(a) -> int:
    from labeling.project import Project
    from labeling.search.text import search

    hits = search(Project(a.dir), a.query, n=a.n)
    rows = [{"item_id": h.item_id, "uri": h.uri, "similarity": round(h.similarity, 4)} for h in hits]
    lines = [f"{'#':>3} {'item_id':>8} {'similarity':>10}  uri"]
    lines += [f"{k:>3} {r['item_id']:>8} {r['similarity']:>10.3f}  {r['uri']}" for k, r in enumerate(rows, 1)]
    _print(rows, a.format, "\n".join(lines))
    return 0


def cmd_prompts(a) -> int:
    from labeling.model.zero_shot import prompt_for, read_prompts, set_prompt
    from labeling.project import Project
    from labeling.service import LabelingService

    project = Project(a.dir)
    if a.cls is not None:
        if a.prompt is None:
            raise ValueError("give --prompt TEXT to set the class's prompt (--prompt '' resets it)")
        set_prompt(project, a.cls, a.prompt)
    elif a.prompt is not None:
        raise ValueError("name the class whose prompt to set: prompts DIR CLASS --prompt TEXT")
    prompts = read_prompts(project)
    rows = [{"class": n, "prompt": prompt_for(n, prompts), "custom": n in prompts}
            for n in LabelingService(a.dir).class_names().values()]
    _print(rows, a.format, "\n".join(f"{r['class']:<24} {r['prompt']}" for r in rows) or "no classes yet")
    return 0


def cmd_compare_backbones(a) -> int:
    from labeling.embed.compare import compare_backbones, format_table
    from labeling.project import Project

    weights = {}
    for item in a.weights:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--weights takes NAME=FILE, got {item!r}")
        weights[name.strip()] = path.strip()
    names = [n.strip() for n in a.backbones.split(",")] if a.backbones else None
    out = compare_backbones(Project(a.dir), names=names, sample=a.sample, weights=weights, device=a.device)
    _print(out, a.format, format_table(out))
    return 0
