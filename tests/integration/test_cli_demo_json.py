"""``demo``, ``import`` and ``embed`` with ``--format json``: the documented envelope and keys."""
from __future__ import annotations

import json
import shutil

from labeling.cli import main
from labeling.cli_json import SCHEMA_VERSION, problems


def _run(capsys, *args) -> dict:
    assert main([*args, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == SCHEMA_VERSION and doc["command"] == args[0]
    assert problems(args[0], doc["result"]) == []
    return doc["result"]


def test_demo_import_and_embed_print_their_documented_keys(tmp_path, capsys):
    demo = _run(capsys, "demo", str(tmp_path / "demo"), "--limit", "20", "--device", "cpu", "--quiet")
    assert demo["imported"] == 20 and demo["embedded"]["embedded"] == 20
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "demo" / "images", other / "photos")
    got = _run(capsys, "import", str(other), str(other / "photos"), "--quiet")
    assert got["added"] == 20
    got = _run(capsys, "embed", str(other), "--device", "cpu", "--quiet")
    assert got["embedded"] == 20 and got["device"] == "cpu"
