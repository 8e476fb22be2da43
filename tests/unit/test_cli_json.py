"""``--format json``: one documented envelope per command, keys and types as docs/cli-json.md says."""
from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest

from labeling.cli import main
from labeling.cli_json import RESULTS, SCHEMA_VERSION, dumps, markdown, problems

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli-json.md"


def test_the_documentation_is_generated_from_the_schemas():
    assert DOC.read_text(encoding="utf-8") == markdown(), "regenerate docs/cli-json.md from labeling.cli_json.markdown()"


def test_the_envelope_names_its_version_and_command_and_zones_its_times():
    got = json.loads(dumps("rounds", [{"finished_at": datetime(2026, 12, 7, 6, 0, 1)}]))
    assert got == {"schema_version": SCHEMA_VERSION, "command": "rounds",
                   "result": [{"finished_at": "2026-12-07T06:00:01+00:00"}]}


def test_the_checker_finds_missing_keys_wrong_types_and_zoneless_times():
    row = {"round_id": 1, "status": "finished", "labels": 2, "finished_at": "2026-12-07 06:00:01",
           "cv_accuracy": None, "ece": "x"}
    assert problems("rounds", [row]) == ["rounds: 'ece' is str, documented float|null",
                                         "rounds: 'finished_at' = '2026-12-07 06:00:01' is not an ISO time with a zone",
                                         "rounds: no key 'error'"]


def _run(capsys, *args) -> dict:
    code = main([*args, "--format", "json"])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    doc = json.loads(out.out)
    assert doc["schema_version"] == SCHEMA_VERSION and doc["command"] == args[0]
    assert problems(args[0], doc["result"]) == []
    return doc["result"]


def test_every_documented_command_prints_its_documented_keys(trained_project, tmp_path, capsys):
    root = str(trained_project)
    with open(trained_project / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        truth = sorted((r["uri"], r["true_class"]) for r in csv.DictReader(fh))
    labels = tmp_path / "l.csv"
    labels.write_text(f"uri,label\n{truth[0][0]},{truth[0][1]}\n", encoding="utf-8")
    preds = tmp_path / "p.csv"
    preds.write_text("file_name,label,score\n" + "".join(f"{u},{c},0.9\n" for u, c in truth), encoding="utf-8")
    seen = set()
    for args in (("queue", root, "--n", "3"), ("label", root, "--csv", str(labels), "--user", "ann"),
                 ("undo", root, "--user", "ann"), ("import-labels", root, str(labels)),
                 ("import-predictions", root, str(preds), "--name", "mine"), ("models", root),
                 ("train", root), ("rounds", root), ("stats", root), ("suspects", root, "--limit", "3"),
                 ("auto-accept", root, "--dry-run", "--target", "0.6"), ("certify", root, "--target", "0.6"),
                 ("check", root),
                 ("export", root, "--to", "csv", "--out", str(tmp_path / "out.csv"))):
        result = _run(capsys, *args)
        seen.add(args[0])
    assert result["rows"] == 200
    assert main(["prompts", root, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert problems("prompts", doc["result"]) == [] and doc["result"][0]["prompt"].startswith("a photo of a ")
    seen.add("prompts")
    # the others: demo, import and embed in tests/integration/test_cli_demo_json; search and compare-backbones
    # in tests/unit/embed/test_foundation
    assert seen == set(RESULTS) - {"demo", "import", "embed", "search", "compare-backbones"}


def test_export_names_its_file_format_with_to_and_says_so_when_given_the_old_way(trained_project, tmp_path, capsys):
    assert main(["export", str(trained_project), "--format", "csv", "--out", str(tmp_path / "x.csv")]) == 2
    assert capsys.readouterr().err.strip() == ("error: the file format is given with --to csv (--format is the "
                                               "output format, table or json, as on every command)")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("command", sorted(RESULTS))
def test_every_schema_key_has_a_known_type(command):
    spec = RESULTS[command]
    fields = spec.get("rows") or spec["fields"]
    for kind, meaning in fields.values():
        assert set(kind.split("|")) <= {"int", "float", "string", "bool", "list", "object", "time", "null"}
        assert meaning
