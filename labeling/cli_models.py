"""The command line's commands for people's own models: ``import-predictions`` (a model's predictions as
suggestions, never as labels) and ``models`` (list them, weigh them, turn them off). Registered on the
main parser by :func:`labeling.cli.build_parser`."""
from __future__ import annotations

from labeling.cli import _fmt_arg, _print
from labeling.views.words import count


def register(sub) -> None:
    """Add the model commands to the command line's sub-parsers."""
    from labeling.data.predictions import PREDICTION_FORMATS

    s = sub.add_parser("import-predictions",
                       help="import a model's predictions (label + score, or per-class probabilities; CSV, JSONL, "
                            "Parquet or Label Studio predictions) as suggestions: the model joins the next rounds "
                            "as an ensemble member; no label is written")
    s.add_argument("dir")
    s.add_argument("file")
    s.add_argument("--name", help="the model's name (default: the file's model_version, else its file name)")
    s.add_argument("--prediction-format", default="auto", choices=("auto", *PREDICTION_FORMATS),
                   help="auto (default): told by the content, then the name")
    s.add_argument("--user", default="import", help="the name stored as the importer")
    _fmt_arg(s)
    s.set_defaults(func=cmd_import_predictions)

    s = sub.add_parser("models", help="imported models: list them, or set one's weight (auto, off or a share)")
    s.add_argument("dir")
    s.add_argument("name", nargs="?", help="the model to weigh")
    s.add_argument("--weight", help="auto (learned from the human labels each round), off, or a share in [0, 1]")
    _fmt_arg(s)
    s.set_defaults(func=cmd_models)


def cmd_import_predictions(a) -> int:
    from labeling.data.predictions import import_predictions
    from labeling.project import Project

    out = import_predictions(Project(a.dir), a.file, name=a.name, fmt=a.prediction_format, user=a.user)
    text = (f"imported predictions of {out['model']!r} for {count(out['items'], 'image')} "
            f"({count(len(out['classes']), 'class')}) from {count(out['rows'], 'row')}; no label written")
    if out["new_classes"]:
        text += f"\n  new classes: {', '.join(out['new_classes'])}"
    text += ("\n  the next round uses them: the running app's retrain loop starts one, or run "
             f"'python -m labeling train {a.dir}'")
    _print(out, a.format, text + "".join(f"\n  {p}" for p in out["problems"][:50]))
    return 0


def cmd_models(a) -> int:
    from labeling.data.predictions import models_table, set_model_weight
    from labeling.project import Project

    project = Project(a.dir)
    if a.weight is not None:
        if not a.name:
            raise ValueError("usage: models DIR NAME --weight auto|off|SHARE")
        set_model_weight(project, a.name, a.weight)
    elif a.name:
        raise ValueError("give --weight auto|off|SHARE to weigh a model, or no name to list them")
    rows = models_table(project)
    lines = [f"{'model':<24} {'items':>6} {'weight':>6} {'share':>6} {'accuracy':>9}  checked on"]
    for r in rows:
        share = "-" if r["share"] is None else f"{r['share']:.2f}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.1%}"
        lines.append(f"{r['model']:<24} {r['items']:>6} {r['weight']:>6} {share:>6} {acc:>9}  "
                     f"{'-' if r['checked_on'] is None else count(r['checked_on'], 'label')}")
    _print(rows, a.format, "\n".join(lines) if rows else "no imported models")
    return 0
