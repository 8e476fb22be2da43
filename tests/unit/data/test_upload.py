"""Images uploaded from the browser: saved inside the project's uploads/ folder only, zip archives
unpacked safely, imported with the import's checks, and only by admins."""
from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from labeling import session as facade
from labeling.data import upload
from labeling.data.upload import UploadError, plain_name, save_uploads
from labeling.service import LabelingService


def _png(shade: int = 80) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28), color=shade).save(buf, "PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_names_become_plain_and_zip_paths_stay_inside_the_upload_folder(small_project, tmp_path):
    hostile = _zip({"../../escape.png": _png(1), "/abs/root.png": _png(2), "sub/ok.png": _png(3),
                    ".hidden/x.png": _png(4), "notes.txt": b"hello", "sub/../../up.png": _png(5)})
    folder, left_out = save_uploads(small_project, [("../../evil name.png", _png(9)), ("batch.zip", hostile)])
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert written == ["batch/abs/root.png", "batch/sub/ok.png", "evil name.png"]
    assert folder.parent == small_project.root / "uploads"
    assert not (tmp_path / "escape.png").exists() and not (small_project.root.parent / "escape.png").exists()
    assert any("notes.txt" in x for x in left_out) and any(".hidden" in x for x in left_out)
    assert plain_name("..") == "file" and plain_name("a/b\\c?.png") == "c_.png"


def test_too_large_unreadable_or_empty_uploads_are_refused_whole(small_project, monkeypatch):
    monkeypatch.setattr(upload, "MAX_UNPACKED_BYTES", 100)
    with pytest.raises(UploadError, match="unpack"):
        save_uploads(small_project, [("big.zip", _zip({"a.png": _png(), "b.png": _png()}))])
    with pytest.raises(UploadError, match="zip"):
        save_uploads(small_project, [("broken.zip", b"not a zip")])
    with pytest.raises(UploadError, match="no image"):
        save_uploads(small_project, [("notes.txt", b"x")])
    monkeypatch.setattr(upload, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(UploadError, match="at most"):
        save_uploads(small_project, [("a.png", _png())])
    assert not (small_project.root / "uploads").exists()  # nothing written


def test_an_upload_is_imported_with_the_import_checks_by_admins_only(demo_project):
    service = LabelingService(demo_project)
    admin = facade.Session(service, facade.local_identity(service, "ann"))  # local mode acts as an admin
    files = [("new.png", _png(10)), ("broken.png", b"not a png"), ("more.zip", _zip({"z/one.png": _png(20)}))]
    steps = []
    result = admin.data.run_upload(files, progress=lambda d, t: steps.append((d, t)))
    assert result["added"] == 2 and [s["path"].rsplit("/", 1)[-1] for s in result["skipped"]] == ["broken.png"]
    assert result["folder"].startswith("uploads/") and steps[-1][0] == steps[-1][1]
    annotator = facade.Session(service, facade.Identity("bob", "annotator"))
    with pytest.raises(PermissionError):
        annotator.data.run_upload([("x.png", _png())])
