"""What ``--format json`` prints: one envelope per command, with a schema version, and the documented keys
of each command's result (:data:`RESULTS`, rendered into ``docs/cli-json.md`` by :func:`markdown`; a test
keeps the two, and the commands' real output, in step).

Every output is ``{"schema_version": 1, "command": NAME, "result": ...}``. Times are ISO 8601 strings
with their zone (UTC); whole numbers stay numbers; absent values are ``null``. Keys are named as the
Python API names the same things (``item_id``, ``round_id``, ``pseudo_label``, ``confidence``).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import PurePath

SCHEMA_VERSION = 1
"""Raised when a key is renamed or removed, or a type changes; adding a key keeps it."""


def _default(value):
    if isinstance(value, datetime):  # the project stores UTC without a zone: say so
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def dumps(command: str, result) -> str:
    """The JSON text of one command's output."""
    return json.dumps({"schema_version": SCHEMA_VERSION, "command": command, "result": result}, indent=2,
                      default=_default, ensure_ascii=False)


# A result is an object (``fields``) or a list of objects (``rows``); each key: (type, meaning).
RESULTS: dict[str, dict] = {
    "demo": {"fields": {
        "root": ("string", "the project folder"), "imported": ("int", "images imported"),
        "embedded": ("object", "the embedding's report, as `embed` gives it"),
        "round_id": ("int|null", "the first round")}},
    "import": {"fields": {
        "added": ("int", "new items"), "already_present": ("int", "files already in the project"),
        "labels": ("int", "labels written (from folders or a manifest)"),
        "duplicates": ("list", "{path, same_as} per file whose content is already there"),
        "skipped": ("list", "{path, reason} per file left out"), "problems": ("list", "notes, one line each")}},
    "embed": {"fields": {"backbone": ("string", "the backbone used"), "device": ("string", "cpu or cuda"),
                         "embedded": ("int", "items embedded now")}},
    "train": {"fields": {"round_id": ("int", "the new round"), "status": ("string", "finished"),
                         "metrics": ("object", "the round's figures: n_labels, phase, seconds, cv_accuracy, ece, ...")}},
    "queue": {"rows": {
        "item_id": ("int", "the item"), "uri": ("string", "its path in the project"),
        "pseudo_label": ("string|null", "the round's suggestion"), "confidence": ("float", "its probability"),
        "score": ("float", "the strategy's score (higher: asked first)")}},
    "label": {"fields": {"labeled": ("int", "labels written"), "problems": ("list", "rows left out, one line each")}},
    "import-labels": {"fields": {"labeled": ("int", "labels written"), "rows": ("int", "rows read"),
                                 "problems": ("list", "rows left out, one line each")}},
    "undo": {"fields": {"undone_items": ("list", "item ids whose label was revoked"),
                        "recorded_as": ("string", "who the undo is recorded as"),
                        "batch_owners": ("list", "whose batch it was")}},
    "rounds": {"rows": {
        "round_id": ("int", "the round"), "status": ("string", "running, finished, failed or discarded"),
        "labels": ("int", "human labels it trained on"), "finished_at": ("time|null", "when it ended"),
        "cv_accuracy": ("float|null", "cross-validated accuracy"), "ece": ("float|null", "calibration error"),
        "error": ("string|null", "the first line of a failure")}},
    "export": {"fields": {"out": ("string", "what was written"), "rows": ("int", "rows (items) written"),
                          "format": ("string", "the file format")}},
    "check": {"fields": {"healthy": ("bool", "no problem left"), "problems": ("list", "one line each"),
                         "repaired": ("list", "what --repair rebuilt")}},
    "auto-accept": {"fields": {
        "round_id": ("int", "the round the plan reads"), "target_precision": ("float", "the target asked"),
        "confidence": ("float", "the confidence level of the bound (0.95)"),
        "bound": ("float|null", "the lower bound on the precision of everything accepted"),
        "interval": ("list|null", "[lower, upper] of that precision"),
        "support": ("int", "held-out labels above the thresholds"), "held_out": ("int", "held-out labels in all"),
        "classes": ("list", "per class: class_id, class, threshold, held_out, support, precision, lower, upper, "
                            "candidates, note"),
        "candidates": ("list", "{item_id, class_id, class, confidence, calibrated} per item to accept"),
        "dry_run": ("bool", "true: nothing written; false: also batch_id, accepted, skipped")}},
    "certify": {"fields": {
        "state": ("string", "none (no batch worth checking), proposed, checking, certified, failed, accepted or "
                            "cancelled"),
        "round_id": ("int|null", "the round whose suggestions make the batch"),
        "target": ("float|null", "the target precision"), "batch": ("int", "items in the batch"),
        "checks": ("int", "items to check, drawn at random from the batch (more keys follow per state: "
                          "proposed: accepted_if_flawless, bound_if_flawless, chance, proposals; checking and after: "
                          "id, right, wrong, bound, todo [{item_id, proposed, image}]; accepted: batch_id, accepted, "
                          "skipped)")}},
    "suspects": {"rows": {"item_id": ("int", "the item"), "uri": ("string", "its path"),
                          "label": ("string", "its human label"), "suggested": ("string", "the class the model suggests"),
                          "confidence": ("float", "the model's probability of that class"),
                          "score": ("float", "how likely the label is wrong (higher first)")}},
    "stats": {"fields": {
        "root": ("string", "the project folder"), "items": ("int", "readable items"),
        "unreadable": ("int", "files that could not be read"), "duplicates": ("int", "files whose content repeats"),
        "labels": ("int", "items with a human label"), "classes": ("list", "class names, in creation order"),
        "round": ("object|null", "the round in use: round_id, labels, finished_at, metrics"),
        "team": ("object", "agreement: pairwise_kappa, fleiss_kappa, krippendorff_alpha, agreement_with_consensus, "
                           "confusion, labels_per_hour, source_precision, ...")}},
    "import-predictions": {"fields": {
        "model": ("string", "the model's name"), "items": ("int", "images with a prediction"),
        "rows": ("int", "rows read"), "classes": ("list", "the model's classes"),
        "new_classes": ("list", "classes created in the project"), "problems": ("list", "rows left out")}},
    "models": {"rows": {
        "model": ("string", "the model's name"), "weight": ("string", "auto, off or a fixed share"),
        "share": ("float|null", "its share of the newest round's blend"),
        "accuracy": ("float|null", "its accuracy on the human labels"),
        "checked_on": ("int|null", "how many human labels that rests on"), "items": ("int", "images it predicted"),
        "imported_at": ("time", "when it was imported")}},
    "search": {"rows": {"item_id": ("int", "the item"), "uri": ("string", "its path"),
                        "similarity": ("float", "cosine similarity of its image to the text")}},
    "prompts": {"rows": {"class": ("string", "the class"), "prompt": ("string", "its zero-shot prompt"),
                         "custom": ("bool", "set by a person (else the default)")}},
    "compare-backbones": {"fields": {
        "sample": ("int", "images embedded per backbone"), "labeled": ("int", "of them with a human label"),
        "current": ("string|null", "the project's backbone"),
        "backbones": ("list", "per backbone: backbone, status (ok or why unavailable), weights, dim, effective_rank, "
                              "knn_agreement, cv_accuracy, seconds")}},
}
"""The keys every output has (more may follow; `simulate` and `user` print larger documents, described in the
README)."""

_TYPES = {"int": (int,), "float": (int, float), "string": (str,), "bool": (bool,), "list": (list,),
          "object": (dict,), "time": (str,), "null": (type(None),)}


def problems(command: str, result) -> list[str]:
    """How ``result`` (parsed JSON) departs from the documented keys and types of ``command``."""
    spec = RESULTS[command]
    if "rows" in spec:
        if not isinstance(result, list):
            return [f"{command}: the result is not a list"]
        objs, fields = result, spec["rows"]
    else:
        objs, fields = [result], spec["fields"]
    out = []
    for obj in objs:
        for key, (kind, _meaning) in fields.items():
            if key not in obj:
                out.append(f"{command}: no key {key!r}")
                continue
            allowed = tuple(t for part in kind.split("|") for t in _TYPES[part])
            value = obj[key]
            if not isinstance(value, allowed) or (kind.startswith(("int", "float")) and isinstance(value, bool)):
                out.append(f"{command}: {key!r} is {type(value).__name__}, documented {kind}")
            elif kind.startswith("time") and isinstance(value, str) and not _zoned(value):
                out.append(f"{command}: {key!r} = {value!r} is not an ISO time with a zone")
    return sorted(set(out))


def _zoned(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def markdown() -> str:
    """``docs/cli-json.md``: the envelope and each command's keys."""
    lines = ["# The command line's JSON output", "",
             "Every command that reports takes `--format json` and prints one JSON document:", "",
             "```json", '{"schema_version": 1, "command": "rounds", "result": [...]}', "```", "",
             "- `schema_version` changes when a key is renamed or removed or a type changes; new keys may be "
             "added without it.",
             "- Times are ISO 8601 with their zone (UTC), e.g. `2026-12-07T06:27:03.199262+00:00`.",
             "- Keys are named as the Python API names the same things (`item_id`, `round_id`, `pseudo_label`).",
             "- `simulate` and `user` print larger documents; the README describes them.", "",
             "This file is generated from `labeling/cli_json.py`; a test keeps it, and the commands' output, in step.",
             ""]
    for command, spec in RESULTS.items():
        shape = "a list of objects" if "rows" in spec else "an object"
        lines += [f"## `{command}`", "", f"`result` is {shape}:", "", "| key | type | meaning |", "|---|---|---|"]
        for key, (kind, meaning) in (spec.get("rows") or spec["fields"]).items():
            lines.append(f"| `{key}` | {kind} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
