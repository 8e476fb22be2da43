"""The layout's rules, checked on the source: who imports whom, module size, no UI in the engine."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 520
"""About 500 lines: a module does one job."""


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in ("labeling", "storage"):  # from labeling import session
                out += [f"{node.module}.{a.name}" for a in node.names]
            else:
                out.append(node.module)
    return out


def _modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py"))


@pytest.mark.parametrize("path", [REPO / "app.py", *_modules("app_pages")], ids=lambda p: p.name)
def test_pages_import_only_the_facade(path):
    engine = [m for m in _imports(path) if m.split(".")[0] in ("labeling", "storage")]
    assert all(m == "labeling.session" for m in engine), f"{path.name} imports {engine}"


@pytest.mark.parametrize("path", _modules("labeling", "storage"), ids=lambda p: str(p.relative_to(REPO)))
def test_engine_modules_are_small_and_free_of_streamlit(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
    assert not any(m.split(".")[0] == "streamlit" for m in _imports(path))


@pytest.mark.parametrize("path", _modules("storage"), ids=lambda p: p.name)
def test_storage_imports_nothing_of_the_engine(path):
    assert not any(m.split(".")[0] == "labeling" for m in _imports(path))


def test_every_package_says_its_job():
    for init in (REPO / "labeling").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{init.parent.name} has no docstring saying what it may import"


@pytest.mark.parametrize("path", [REPO / "app.py", *_modules("app_pages")], ids=lambda p: p.name)
def test_pages_have_no_bare_strings_that_streamlit_would_show(path):
    """Streamlit's magic writes every bare expression of a page script, attribute docstrings included."""
    body = ast.parse(path.read_text()).body
    bare = [n.lineno for n in body[1:] if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)]
    assert not bare, f"{path.name}: bare strings at lines {bare} would be rendered as page text"


@pytest.mark.parametrize("path", _modules("app_pages"), ids=lambda p: p.name)
def test_tables_show_a_dash_for_missing_values_never_none(path):
    """``st.dataframe`` prints a missing value as the word "None" unless it is given a placeholder."""
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "dataframe"]
    bare = [c.lineno for c in calls if "placeholder" not in {k.arg for k in c.keywords}]
    assert not bare, f"{path.name}: tables at lines {bare} would show missing values as 'None'"


def test_the_server_listens_before_it_imports_the_engine():
    """``asgi.py`` (what ``serve`` runs) imports neither torch nor the pages' facade: the server answers
    its health check at once and the project opens in a thread beside it (it took 7 s on 2 cores when the
    cookie route imported the facade, and with it torch, before the server listened)."""
    import subprocess
    import sys

    code = ("import sys; import asgi; "
            "print(sorted(m for m in ('torch', 'labeling.session', 'app_pages.common') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_pages_facade_imports_no_training_library():
    """The server reads predictions, labels and the cached kNN graph; training runs in its own process.
    So the pages' facade imports none of torch, torchvision, scikit-learn or faiss: the first page of a
    fresh server no longer waits about 4 s for them."""
    from conftest import training_libraries_imported

    assert training_libraries_imported("from labeling import session") == []
