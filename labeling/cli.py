"""``python -m labeling``: the engine on the command line.

Every command exits 0 on success and non-zero with a one-line reason on failure; commands that
report take ``--format json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import duckdb

from labeling.views.words import count

LOG = logging.getLogger("labeling")

EXPECTED_ERRORS = (ValueError, LookupError, FileNotFoundError, PermissionError, duckdb.Error, OSError)


_RUNNING = {"command": None}
"""The command being run (set by :func:`main`): named in its JSON output."""


def _print(obj, fmt: str, table=None) -> None:
    """A command's report: ``table`` (text) by default, or with ``--format json`` the documented envelope
    (:mod:`labeling.cli_json`: schema version, command, result; times with their zone)."""
    if fmt == "json" or table is None:
        from labeling.cli_json import dumps

        print(dumps(_RUNNING["command"] or "", obj))
    else:
        print(table)


def _fmt_arg(p: argparse.ArgumentParser, default: str = "table") -> None:
    p.add_argument("--format", choices=("table", "json"), default=default, help="output format")


def cmd_demo(a) -> int:
    from labeling.data.demo import create_demo
    out = create_demo(a.dir, limit=a.limit, device=a.device, progress=not a.quiet)
    _print(out, a.format, f"demo project ready in {out['root']}: {out['imported']} images, round {out['round_id']}")
    return 0


def cmd_import(a) -> int:
    from labeling.data.importer import declare_classes, import_folder, import_manifest, parse_class_list
    from labeling.project import Project
    classes = parse_class_list(a.classes) if a.classes else []  # checked before anything is written
    project = Project(a.dir, create=True)
    declared = declare_classes(project, classes, user="import") if classes else None
    if a.manifest:
        summary = import_manifest(project, a.manifest, progress=not a.quiet)
    elif a.src is None and declared is not None:
        _print(declared, a.format, f"declared {count(len(declared['created']), 'class')}"
               + (f" ({', '.join(declared['existing'])} already there)" if declared["existing"] else ""))
        return 0
    else:
        if a.src is None:
            raise ValueError("give a source folder (SRC), --manifest FILE or --classes NAMES")
        summary = import_folder(project, a.src, labels_from_folders=a.labels_from_folders, progress=not a.quiet)
    if a.embeddings:
        from labeling.embed.pipeline import import_embeddings
        summary.problems.append(json.dumps(import_embeddings(project, a.embeddings, ids_path=a.embedding_ids)))
    d = summary.to_dict()
    lines = [f"added {d['added']} items ({d['already_present']} already present), {d['labels']} labels, "
             f"{len(d['duplicates'])} duplicates, {len(d['skipped'])} skipped"]
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in d["skipped"]]
    lines += [f"  duplicate {s['path']} (same as {s['same_as']})" for s in d["duplicates"]]
    lines += [f"  note: {p}" for p in d["problems"]]
    _print(d, a.format, "\n".join(lines))
    return 0


def cmd_embed(a) -> int:
    from labeling.embed.pipeline import embed_project
    from labeling.project import Project
    if a.engine == "ray":
        from labeling.embed.ray_engine import embed_project_ray
        out = embed_project_ray(Project(a.dir), backbone=a.backbone, weights=a.weights, device=a.device,
                                batch_size=a.batch_size, image_size=a.image_size, address=a.address,
                                workers=a.workers, progress=not a.quiet)
        _print(out, a.format, f"embedded {out['embedded']} items with {out['backbone']} on {out['workers']} Ray "
                              f"{out['device'].upper()} workers ({out['already']} already done, {out['failed']} failed)")
        return 0
    if a.address or a.workers:
        raise ValueError("--address and --workers apply to --engine ray only")
    out = embed_project(Project(a.dir), backbone=a.backbone, weights=a.weights, device=a.device,
                        batch_size=a.batch_size, image_size=a.image_size, progress=not a.quiet)
    _print(out, a.format, f"embedded with {out['backbone']} on {out['device']}")
    return 0


def cmd_train(a) -> int:
    from labeling.project import Project
    from labeling.model.rounds import train_round
    from labeling.service import LabelingService
    round_id = train_round(Project(a.dir), device=a.device, cv=not a.no_cv)
    rnd = next(r for r in LabelingService(a.dir).rounds() if r["id"] == round_id)
    m = rnd["metrics"]
    acc = m.get("cv_accuracy")
    _print({"round_id": round_id, "status": rnd["status"], "metrics": m}, a.format,
           f"round {round_id} finished: {m['n_labels']} labels, phase {m['phase']}, "
           f"cv accuracy {'n/a' if acc is None else f'{acc:.3f}'}, {m['seconds']} s")
    return 0


def cmd_queue(a) -> int:
    from labeling.service import LabelingService
    items = LabelingService(a.dir).queue(a.n, strategy=a.strategy)
    rows = [i.to_dict() for i in items]
    w = max([12] + [len(r["pseudo_label"] or "-") for r in rows]) + 2
    lines = [f"{'#':>3} {'item_id':>8}  {'pseudo_label':<{w}}{'conf':>6}{'score':>8}  uri"]
    for k, r in enumerate(rows, 1):
        lines.append(f"{k:>3} {r['item_id']:>8}  {r['pseudo_label'] or '-':<{w}}{r['confidence']:>6.2f}"
                     f"{r['score']:>8.3f}  {r['uri']}")
    _print([{k: r[k] for k in ("item_id", "uri", "pseudo_label", "confidence", "score")} for r in rows],
           a.format, "\n".join(lines))
    return 0


def cmd_label(a) -> int:
    from labeling.service import LabelingService
    from storage.labels import InvalidName
    with open(a.csv, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            cols = set(reader.fieldnames or [])
            if "label" not in cols or not cols & {"uri", "item_id"}:
                raise ValueError(f"{a.csv}: needs a 'label' column and a 'uri' or 'item_id' column; "
                                 f"found {sorted(cols)[:10]}")
            rows = list(reader)
        except csv.Error as exc:  # a field over csv.field_size_limit(), a stray quote: one line, no traceback
            why = (f"a field is longer than {csv.field_size_limit()} characters" if "field limit" in str(exc)
                   else f"malformed CSV: {exc}")
            raise ValueError(f"{a.csv} line {reader.reader.line_num}: {why}; nothing labeled") from exc
    try:
        out = LabelingService(a.dir).label_table(rows, user=a.user)
    except InvalidName as exc:
        raise ValueError(f"{a.csv} {exc}") from exc
    _print(out, a.format, f"labeled {count(out['labeled'], 'item')}" + "".join(f"\n  {p}" for p in out["problems"]))
    return 0 if not out["problems"] or out["labeled"] else 1


def cmd_import_labels(a) -> int:
    from labeling.data.formats import import_labels
    from labeling.service import LabelingService
    out = import_labels(LabelingService(a.dir), a.file, fmt=a.label_format, user=a.user)
    _print(out, a.format, f"imported {out['labeled']} of {out['rows']} rows (source import)"
           + "".join(f"\n  {p}" for p in out["problems"][:50]))
    return 0 if out["labeled"] or not out["rows"] else 1


OWNER = "owner"
"""The name the command line records when it acts as the project owner on someone else's work."""


def cmd_undo(a) -> int:
    from labeling.service import LabelingService
    service = LabelingService(a.dir)
    owners = service.batch_owners(a.batch) if a.batch else {a.user}
    # The command line is the project owner: undoing another person's batch is recorded as the owner's
    # act, not as if --user had done it (--user picks whose newest batch to undo).
    actor = a.user if owners <= {a.user} else OWNER
    items = service.undo(a.batch, user=actor if a.batch else a.user, role="admin")
    text = f"undid {count(len(items), 'label')}"
    if actor != a.user:
        text += f" of {', '.join(sorted(owners))}'s batch as the project owner (recorded as {OWNER!r})"
    _print({"undone_items": items, "recorded_as": actor, "batch_owners": sorted(owners)}, a.format, text)
    return 0


def cmd_rounds(a) -> int:
    from labeling.service import LabelingService
    rounds = LabelingService(a.dir).rounds()
    rows = [{"round_id": r["id"], "status": r["status"], "labels": r["n_labels"],
             "finished_at": r["finished_at"],
             "cv_accuracy": r["metrics"].get("cv_accuracy"), "ece": r["metrics"].get("ece"),
             "error": (r["error"] or "").splitlines()[0] if r["error"] else None} for r in rounds]
    lines = [f"{'round':>5} {'status':<10}{'labels':>7}  {'cv_acc':>7} {'ece':>6}  finished_at"]
    for r in rows:
        acc = "-" if r["cv_accuracy"] is None else f"{r['cv_accuracy']:.3f}"
        ece = "-" if r["ece"] is None else f"{r['ece']:.3f}"
        lines.append(f"{r['round_id']:>5} {r['status']:<10}{r['labels']:>7}  {acc:>7} {ece:>6}  {r['finished_at']}")
    _print(rows, a.format, "\n".join(lines))
    return 0


def cmd_stats(a) -> int:
    from labeling.service import LabelingService
    from labeling.team.stats import format_text, report
    stats = report(LabelingService(a.dir))  # the same document as the Python API's stats
    _print(stats, a.format, format_text(stats["team"]))
    return 0


def cmd_export(a) -> int:
    from labeling.data.export import export
    from labeling.project import Project
    if a.format not in ("table", "json"):
        raise ValueError(f"the file format is given with --to {a.format} (--format is the output format, table or "
                         "json, as on every command)")
    if a.export_format is None:
        raise ValueError("give the file format: --to csv|jsonl|parquet|imagefolder|coco|hf|fiftyone|labelstudio")
    out = export(Project(a.dir), a.export_format, a.out, labeled_only=a.labeled_only, link=a.link,
                 history=a.history, overwrite=a.overwrite)
    lines = [f"wrote {out['rows']} rows to {out['out']}"]
    if "linked" in out:
        lines.append(f"  {out['linked']} images linked, {out['copied']} copied")
    if "history" in out:
        lines.append(f"  wrote {out['events']} label events to {out['history']}")
    lines += [f"  note: {n}" for n in out.get("notes", [])]
    if "label_config" in out:
        lines.append(f"  Label Studio labeling config for these tasks: {out['label_config']}")
    _print(out, a.format, "\n".join(lines))
    return 0


def cmd_check(a) -> int:
    from labeling.data.check import check_project
    from labeling.project import Project
    report = check_project(Project(a.dir), repair=a.repair)
    lines = [("healthy" if report.healthy else "problems found")]
    lines += [f"  problem: {p}" for p in report.problems] + [f"  repaired: {r}" for r in report.repaired]
    _print(report.to_dict(), a.format, "\n".join(lines))
    return 0 if report.healthy else 1


def cmd_simulate(a) -> int:
    from labeling.active.simulate import format_table, simulate_folder
    from labeling.active.trust import parse_targets
    targets = None if a.auto_accept is None else parse_targets(a.auto_accept)
    try:
        budgets = [int(b) for b in a.budgets.split(",")]
    except ValueError as exc:
        raise ValueError(f"budgets must be integers like 10,20,50; got {a.budgets!r}") from exc
    res = simulate_folder(a.src, strategies=a.strategies.split(","), budgets=budgets,
                          repeats=a.repeats, test_fraction=a.test_fraction, seed=a.seed, device=a.device,
                          backbone=a.backbone, progress=None if a.quiet else (lambda s: print(s, file=sys.stderr)),
                          auto_accept=targets)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    _print(res, a.format, format_table(res))
    return 0


def cmd_serve(a) -> int:
    import os
    import signal
    import subprocess
    import threading
    import webbrowser

    from labeling.project import Project
    Project(a.dir)  # fail early with a clear message
    from storage.db import release_files
    release_files()  # and let go of the file: the server opens it next (it would wait for this process)
    from labeling.paths import install_root
    app = install_root() / "asgi.py"  # the app plus its session-cookie route (source tree or installed copy)
    env = dict(os.environ, QUORUM_PROJECT=str(Path(a.dir).resolve()))
    # Streamlit always runs headless (no first-run prompt on the terminal); the browser is opened here.
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", a.host, "--server.port",
           str(a.port), "--browser.gatherUsageStats", "false", "--server.headless", "true",
           # no "Deploy", rerun or clear-cache: this is a labeling tool; the menu keeps the light / dark switch
           "--client.toolbarMode", "viewer",
           # no source watcher: a project folder of 100k images would flood it (and nothing here is edited live)
           "--server.fileWatcherType", "none", "--server.runOnSave", "false",
           # no full garbage collection after every script run: with torch and the project loaded it
           # costs about 250 ms per run, i.e. per key press (the heap is frozen once the project is open)
           "--runner.postScriptGC", "false"]
    url = f"http://{a.host}:{a.port}"
    print(f"Quorum: serving {Path(a.dir).resolve()} at {url} (Ctrl+C to stop)", flush=True)
    if not a.headless:
        threading.Timer(4.0, webbrowser.open, args=(url,)).start()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stopping ``serve`` stops the server it runs
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    return proc.wait()


def _die_with_parent() -> None:
    """In the server's process: ask Linux to end it when ``serve`` itself is killed (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m labeling", description="Quorum: active-learning image labeling.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    from labeling import __version__
    p.add_argument("--version", action="version", version=f"quorum {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="create the Animal-MNIST demo project in DIR")
    s.add_argument("dir")
    s.add_argument("--limit", type=int, default=3000, help="number of images (default 3000)")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--quiet", action="store_true")
    _fmt_arg(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("import", help="import images from SRC (inside DIR) or a manifest")
    s.add_argument("dir")
    s.add_argument("src", nargs="?")
    s.add_argument("--labels-from-folders", action="store_true", help="use SRC/<class>/... as initial labels")
    s.add_argument("--manifest", help="CSV or Parquet with path[,label]")
    s.add_argument("--embeddings", help="precomputed embeddings (.npy with --embedding-ids, or Parquet)")
    s.add_argument("--embedding-ids", help="ids for a .npy embedding file (.npy, .txt or .csv)")
    s.add_argument("--classes", help="declare the classes up front, comma-separated, in the order of their keys "
                                     "on the Label page (the first key press then labels)")
    s.add_argument("--quiet", action="store_true")
    _fmt_arg(s)
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("embed", help="embed every item not yet embedded (resumable)")
    s.add_argument("dir")
    s.add_argument("--backbone", help="backbone name (default: the project's, else efficientnet_lite0)")
    s.add_argument("--weights", help="local weights file for torchvision backbones, or 'none'")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--image-size", type=int)
    s.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local (this machine) or ray (Ray Data workers; pip install 'quorum[ray]')")
    s.add_argument("--address", help="Ray cluster, e.g. ray://host:10001 (default: RAY_ADDRESS, else a local Ray)")
    s.add_argument("--workers", type=int, help="Ray actors (default: one per GPU, else cluster CPUs / 2)")
    s.add_argument("--quiet", action="store_true")
    _fmt_arg(s)
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("train", help="train a round on the current labels")
    s.add_argument("dir")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--no-cv", action="store_true", help="skip cross-validated metrics")
    _fmt_arg(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("queue", help="the next items to label, most useful first")
    s.add_argument("dir")
    s.add_argument("--n", type=int, default=20)
    s.add_argument("--strategy", default="default")
    _fmt_arg(s)
    s.set_defaults(func=cmd_queue)

    s = sub.add_parser("import-labels", help="import labels from CSV, JSONL, Parquet, COCO JSON, HF metadata.jsonl, "
                                             "an ImageFolder tree, Label Studio (JSON, JSON_MIN, CSV), CVAT XML "
                                             "or FiftyOne (dataset folder, CSV)")
    s.add_argument("dir")
    s.add_argument("file", help="the label file (or an HF imagefolder with metadata.jsonl, or an ImageFolder tree)")
    from labeling.data.foreign import FOREIGN_FORMATS
    s.add_argument("--label-format", default="auto",
                   choices=("auto", "csv", "jsonl", "parquet", "coco", "hf", "imagefolder", *FOREIGN_FORMATS),
                   help="auto (default): told by the content, then the name")
    s.add_argument("--user", default="import", help="the name stored with the imported labels")
    _fmt_arg(s)
    s.set_defaults(func=cmd_import_labels)
    s = sub.add_parser("label", help="apply labels from a CSV (uri or item_id, label)")
    s.add_argument("dir")
    s.add_argument("--csv", required=True)
    s.add_argument("--user", required=True)
    _fmt_arg(s)
    s.set_defaults(func=cmd_label)

    s = sub.add_parser("undo", help="undo a batch (default: the user's newest)")
    s.add_argument("dir")
    s.add_argument("--user", required=True)
    s.add_argument("--batch")
    _fmt_arg(s)
    s.set_defaults(func=cmd_undo)

    s = sub.add_parser("rounds", help="list model rounds")
    s.add_argument("dir")
    _fmt_arg(s)
    s.set_defaults(func=cmd_rounds)

    s = sub.add_parser("stats", help="team figures: kappa, alpha, agreement, labels per hour, precision by source")
    s.add_argument("dir")
    s.add_argument("--format", choices=("table", "text", "json"), default="table",
                   help="output format (text: the same as table)")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("export", help="export labels")
    s.add_argument("dir")
    s.add_argument("--to", dest="export_format",
                   choices=("csv", "jsonl", "parquet", "imagefolder", "coco", "hf", "fiftyone", "labelstudio"),
                   help="coco: COCO-style classification JSON; hf: Hugging Face imagefolder (images + metadata.jsonl); "
                        "fiftyone: FiftyOneImageClassificationDataset (data/ + labels.json); labelstudio: Label "
                        "Studio tasks (labels as annotations, the newest round's suggestions as predictions)")
    s.add_argument("--out", required=True)
    s.add_argument("--labeled-only", action="store_true")
    s.add_argument("--link", action="store_true", help="imagefolder/hf: link the images instead of copying them")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing file (or an earlier tree export) at --out")
    s.add_argument("--history", action="store_true",
                   help="also write every label event (inside a folder export: events.jsonl; beside a file: "
                        "NAME.events.EXT)")
    s.add_argument("--format", default="table", help="output format: table or json")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("check", help="verify a project; --repair rebuilds what the images allow")
    s.add_argument("dir")
    s.add_argument("--repair", action="store_true")
    _fmt_arg(s)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("simulate", help="compare strategies by replaying an oracle over SRC/<class>/<image>")
    s.add_argument("src")
    s.add_argument("--strategies", default="random,default")
    s.add_argument("--budgets", default="10,20,50,100,200")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--test-fraction", type=float, default=0.3)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--backbone")
    s.add_argument("--auto-accept", metavar="TARGETS",
                   help="measure trust at these target precisions, e.g. 0.95,0.97: the true precision and "
                        "coverage of auto-accept, the calibration error of the shown confidence, and "
                        "LogisticRegression / RandomForest baselines on the same labels")
    s.add_argument("--out", help="write results JSON here")
    s.add_argument("--quiet", action="store_true")
    _fmt_arg(s)
    s.set_defaults(func=cmd_simulate)

    from labeling import cli_clip, cli_models, cli_team
    cli_team.register(sub)
    cli_models.register(sub)
    cli_clip.register(sub)

    s = sub.add_parser("serve", help="open the labeling app on a project")
    s.add_argument("dir")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--headless", action="store_true", help="do not open a browser")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _RUNNING["command"] = args.command
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except EXPECTED_ERRORS as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
