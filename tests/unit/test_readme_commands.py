"""Every command the README prints parses as printed: each flag, sub-command and choice it shows exists."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from labeling.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_commands() -> list[str]:
    """``python -m labeling ...`` as the README shows it, in code blocks and inline code."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        found += [line.split("  #")[0].strip() for line in block.splitlines() if "python -m labeling" in line]
        found += ["python -m labeling" + line.strip()[len("quorum"):] for line in block.splitlines()
                  if line.startswith("quorum ")]  # the installed command takes the same arguments
    found += re.findall(r"(?<!`)`([^`\n]*python -m labeling[^`\n]*)`(?!`)", text)
    return list(dict.fromkeys(c for c in found if c))


def _variants(command: str) -> list[list[str]]:
    """The argument lists a printed synopsis stands for: ``[optional]`` parts included, ``a|b|c`` choices
    one at a time, `` | `` between whole alternatives split, ``...`` dropped."""
    command = re.sub(r"^(\w+=\S+\s+)+", "", command)  # RAY_ADDRESS=... python -m labeling
    head, _, rest = command.partition("python -m labeling")
    assert not head.strip(), command
    words = shlex.split(rest.replace("[", " ").replace("]", " "))
    alternatives = [words]
    if "|" in words:  # user DIR list | set-role NAME ROLE | disable NAME
        cut = [k for k, w in enumerate(words) if w == "|"]
        prefix = words[:cut[0] - 1] if words[cut[0] - 1] != words[0] else words[:1]
        parts, start = [], 0
        for k in [*cut, len(words)]:
            parts.append(words[start:k])
            start = k + 1
        prefix = parts[0][:2]  # the command and its DIR
        alternatives = [parts[0]] + [prefix + p for p in parts[1:]]
    out = []
    for words in alternatives:
        words = [w for w in words if w != "..."]
        first = next((k for k, w in enumerate(words) if "|" in w and not w.startswith("-")), None)
        if first is None:
            out.append([w.split("|")[0] for w in words])
            continue
        for choice in words[first].split("|"):
            out.append([choice if k == first else w.split("|")[0] for k, w in enumerate(words)])
    return out


PLACEHOLDERS = {"N": "5", "ROLE": "reviewer"}
"""Placeholders that must be a number or a choice to parse; the others (DIR, NAME, FILE...) parse as text."""


def _filled(args: list[str]) -> list[str]:
    return [PLACEHOLDERS.get(a, a) for a in args]


COMMANDS = _readme_commands()


def test_the_readme_shows_the_commands():
    assert len(COMMANDS) > 20
    assert any("user DIR add alice --role annotator" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses_as_printed(command):
    parser = build_parser()
    for args in _variants(command):
        try:
            parser.parse_args(_filled(args))
        except SystemExit as exc:  # argparse's way of refusing (0: it answered, as --version does)
            if exc.code == 0:
                continue
            pytest.fail(f"the README's `{command}` does not parse as {args} (exit {exc.code})")


def test_the_command_line_says_its_version(capsys):
    import labeling
    from labeling.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"quorum {labeling.__version__}"
    import tomllib

    declared = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["version"]
    assert labeling.__version__ == declared  # the installed package's own version


def test_the_readme_python_example_runs_as_printed(demo_project, tmp_path, monkeypatch, capsys):
    import shutil

    block = re.search(r"### From Python.*?```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert block, "the README's Python example"
    shutil.copytree(demo_project, tmp_path / "demo-project")
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 6 and out[-1].split()[1] == "0"  # five queue items, then the version and 0 labels
    assert (tmp_path / "labels.parquet").exists()
