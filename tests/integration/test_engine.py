"""The engine end to end on a small real demo project: import, embed, rounds, queue, label, undo, export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labeling.data.export import export
from labeling.data.importer import import_folder
from labeling.embed.pipeline import import_embeddings, load_vectors
from labeling.project import Project, ProjectError
from labeling.model.rounds import train_round
from labeling.service import LabelingService
from storage import labels as labels_q

ROOT = Path(__file__).resolve().parents[2]


def _label_truth(service, truth, n, *, user="alice"):
    """Label the first n items of each class from the demo's truth file (a simulated annotator)."""
    by_class: dict[str, list[str]] = {}
    for uri, cls in sorted(truth.items()):
        by_class.setdefault(cls, []).append(uri)
    rows = [{"uri": u, "label": c} for c, uris in by_class.items() for u in uris[:n]]
    return service.label_table(rows, user=user)


def test_demo_builds_a_cold_start_round(demo_project):
    service = LabelingService(demo_project)
    summary = service.summary()
    from labeling.data.demo import demo_classes

    assert summary["items"] == 200 and summary["labels"] == 0
    assert summary["classes"] == demo_classes()  # declared up front: the first key press labels
    rnd, pred = service.predictions()
    assert rnd["status"] == "finished" and pred.phase == "typicality"
    queue = service.queue(20)
    assert len(queue) == 20 and len({q.item_id for q in queue}) == 20
    # no class has labels yet: suggestions are the backbone's own ImageNet proposals, marked as such
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    assert all(q.pseudo_label.endswith(" (ImageNet)") for q in queue)
    assert all(q.pseudo_label[: -len(" (ImageNet)")] in _IMAGENET_CATEGORIES for q in queue)
    assert all(0 < q.confidence <= 1 for q in queue)


def test_labels_train_a_round_with_pseudo_labels_and_metrics(demo_project, truth):
    service = LabelingService(demo_project)
    assert _label_truth(service, truth, 3)["labeled"] == 30
    round_id = train_round(service.project, device="cpu")
    rnd, pred = service.predictions()
    assert rnd["id"] == round_id and pred.phase in ("typicality", "disagreement")
    assert rnd["metrics"]["cv_accuracy"] is not None and 0 <= rnd["metrics"]["ece"] <= 1
    assert set(pred.scores) >= {"margin", "bald", "vote_entropy", "t_similarity", "least_confidence"}
    assert pred.votes.shape == (len(pred.member_names), 200)
    names = service.class_names()
    uri_of = dict(zip(load_vectors(service.project).item_ids.tolist(), load_vectors(service.project).uris))
    acc = np.mean([names[int(c)] == truth[uri_of[int(i)]] for i, c in zip(pred.item_ids, pred.pseudo)])
    assert acc > 0.5  # 30 labels on 10 classes; chance is 0.1
    queue = service.queue(10, strategy="bald")
    assert all(q.pseudo_label in names.values() for q in queue)
    scores = [q.score for q in queue]
    assert scores == sorted(scores, reverse=True)



def test_label_advances_queue_and_undo_restores(demo_project):
    service = LabelingService(demo_project)
    other = LabelingService(demo_project)  # another session (or process) on the same project
    assert service.summary()["labels"] == 0
    first = service.queue(3)
    batch = service.label([first[0].item_id], "cat", user="bob")
    assert first[0].item_id not in {q.item_id for q in service.queue(3)}
    assert other.summary()["labels"] == service.summary()["labels"] == 1
    other.label([first[1].item_id], None, user="eve")  # a skip is not a label
    other.label([first[2].item_id], "cow", user="eve")
    assert service.summary()["labels"] == 2
    other.undo(user="eve")
    other.undo(user="eve")
    assert service.summary()["labels"] == 1
    service.label([first[0].item_id], "dog", user="bob")
    service.label([first[1].item_id, first[2].item_id], "dog", user="bob", source="accept_neighbourhood")
    assert service.undo(user="bob") == [first[1].item_id, first[2].item_id]  # the newest batch
    assert service.undo(user="bob") == [first[0].item_id]  # dog undone: back to cat
    with service.project.db.session() as con:
        items, classes = labels_q.current_labels(con)
    names = service.class_names()
    assert {int(i): names[int(c)] for i, c in zip(items, classes)} == {first[0].item_id: "cat"}
    assert service.undo(batch, user="bob") == [first[0].item_id]
    with pytest.raises(LookupError):
        service.undo(batch, user="bob")


@pytest.mark.parametrize(("strategy", "windows_up_to"), [("default", 1_024), ("most_confident", 1_024),
                                                         ("default", 64)])
def test_queue_skips_labeled_items_far_down_the_order(demo_project, strategy, windows_up_to, monkeypatch):
    monkeypatch.setattr(LabelingService, "WINDOWS_UP_TO", windows_up_to)  # 64: the all-labels lookup too
    service = LabelingService(demo_project)
    ranked = [q.item_id for q in service.queue(200, strategy=strategy)]
    assert len(ranked) == 200 and len(set(ranked)) == 200
    # the top 150 labeled or skipped: the open items lie beyond the first windows the queue looks at
    service.label(ranked[:100], "cat", user="bob")
    service.label(ranked[100:150], None, user="bob")  # skipped
    assert [q.item_id for q in service.queue(5, strategy=strategy)] == ranked[150:155]
    assert [q.item_id for q in service.queue(5, strategy=strategy, exclude=ranked[150:152])] == ranked[152:157]
    service.undo(user="bob")  # the skips undone: those items are open again, in their place
    assert [q.item_id for q in service.queue(3, strategy=strategy)] == ranked[100:103]
    assert len(service.queue(500, strategy=strategy)) == 100


def test_failed_round_keeps_previous_round(demo_project, monkeypatch):
    service = LabelingService(demo_project)
    before = service.predictions()[0]["id"]

    def boom(*a, **k):
        raise RuntimeError("training exploded")

    monkeypatch.setattr("labeling.model.rounds._compute", boom)
    with pytest.raises(RuntimeError):
        train_round(service.project, device="cpu")
    rounds = service.rounds()
    assert rounds[-1]["status"] == "failed" and "training exploded" in rounds[-1]["error"]
    assert service.predictions()[0]["id"] == before


def test_reimport_adds_only_new_files_and_skips_bad_ones(demo_project):
    project = Project(demo_project)
    again = import_folder(project, project.root / "images", progress=False)
    assert again.added == 0 and again.already_present == 200
    extra = project.root / "images" / "new"
    extra.mkdir()
    (extra / "empty.png").write_bytes(b"")
    (extra / "text.jpg").write_text("not an image")
    good = next((project.root / "images").glob("*.png")).read_bytes()
    (extra / "copy of first.png").write_bytes(good)  # same content: a duplicate
    from PIL import Image
    Image.new("RGB", (9, 7), "red").save(extra / "fresh red.png")
    summary = import_folder(project, project.root / "images", progress=False)
    assert summary.added == 1
    assert {Path(p).name for p, _ in summary.skipped} == {"empty.png", "text.jpg"}
    assert all(reason for _, reason in summary.skipped)
    assert [Path(p).name for p, _ in summary.duplicates] == ["copy of first.png"]
    assert LabelingService(demo_project).summary()["items"] == 201


def test_import_refuses_a_source_outside_the_project(demo_project, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ProjectError, match="outside the project folder"):
        import_folder(Project(demo_project), outside, progress=False)


def test_labels_from_folders(tmp_path):
    from PIL import Image
    root = tmp_path / "p"
    for cls, colour in (("red", "red"), ("blue", "blue")):
        (root / "src" / cls).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (10 + k, 10), colour).save(root / "src" / cls / f"{k}.png")
    project = Project(root, create=True)
    summary = import_folder(project, root / "src", labels_from_folders=True, progress=False)
    assert summary.added == 6 and summary.labels == 6 and sorted(summary.new_classes) == ["blue", "red"]
    with project.db.session() as con:
        assert {e[5] for e in labels_q.all_events(con)} == {"import"}


def test_precomputed_embeddings_drive_a_round(demo_project, tmp_path):
    service = LabelingService(demo_project)
    pv = load_vectors(service.project)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(pv.item_ids), 16)).astype(np.float32)
    np.save(tmp_path / "e.npy", vecs)
    (tmp_path / "ids.txt").write_text("\n".join(pv.uris))
    out = import_embeddings(service.project, tmp_path / "e.npy", ids_path=tmp_path / "ids.txt")
    assert out["imported"] == len(pv.item_ids)
    assert load_vectors(service.project).vectors.shape == (len(pv.item_ids), 16)
    bad = vecs.copy()
    bad[3, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="(?i)nan|finite"):
        import_embeddings(service.project, tmp_path / "bad.npy", ids_path=tmp_path / "ids.txt")


def test_cached_graph_is_read_once_per_process_and_follows_new_vectors(demo_project, tmp_path):
    from labeling.embed.pipeline import knn_graph_cached

    project = Project(demo_project)
    pv = load_vectors(project)
    sims, idx = knn_graph_cached(project, pv)
    assert not sims.flags.writeable and not idx.flags.writeable  # shared: nobody may change them
    again = knn_graph_cached(project, load_vectors(project))
    assert again[0] is sims and again[1] is idx  # derived operators are built once per graph
    assert knn_graph_cached(Project(demo_project), pv)[0] is not sims  # another Project object: its own cache
    # new vectors (a new version) give a new graph, computed from them
    vecs = np.random.default_rng(0).normal(size=(len(pv.item_ids), 8)).astype(np.float32)
    np.save(tmp_path / "e.npy", vecs)
    (tmp_path / "ids.txt").write_text("\n".join(pv.uris))
    import_embeddings(project, tmp_path / "e.npy", ids_path=tmp_path / "ids.txt")
    new_sims, new_idx = knn_graph_cached(project, load_vectors(project))
    assert new_sims is not sims and not np.array_equal(new_idx, idx)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    best = np.argsort(-(unit @ unit.T), axis=1)[:, 1]
    assert (new_idx[:, 0] == best).mean() > 0.95


def test_exports_carry_labels_and_provenance(demo_project, tmp_path):
    service = LabelingService(demo_project)
    q = service.queue(2)
    service.label([q[0].item_id], "'; DROP TABLE items; --", user="eve")
    service.label([q[1].item_id], "../../escape", user="eve")
    for fmt, name in (("csv", "l.csv"), ("jsonl", "l.jsonl"), ("parquet", "l.parquet")):
        out = export(service.project, fmt, tmp_path / name)
        assert out["rows"] == 200
    table = pd.read_csv(tmp_path / "l.csv")
    row = table[table.item_id == q[0].item_id].iloc[0]
    assert row["label"] == "'; DROP TABLE items; --" and row["annotator"] == "eve" and row["source"] == "manual"
    lines = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert sum(1 for r in lines if r["label"]) == 2
    assert len(pd.read_parquet(tmp_path / "l.parquet")) == 200
    folder = tmp_path / "imgs"
    export(service.project, "imagefolder", folder)
    files = [p for p in folder.rglob("*.png") if p.is_file()]
    assert len(files) == 2 and all(p.resolve().is_relative_to(folder.resolve()) for p in files)


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "labeling", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_cli_queue_label_rounds_json(demo_project, tmp_path):
    res = _cli("queue", str(demo_project), "--n", "5", "--format", "json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["result"]
    assert len(rows) == 5 and set(rows[0]) == {"item_id", "uri", "pseudo_label", "confidence", "score"}
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("uri,label\n" + "".join(f"{r['uri']},brand new class\n" for r in rows[:2]))
    res = _cli("label", str(demo_project), "--csv", str(csv_path), "--user", "carol")
    assert res.returncode == 0, res.stderr
    assert "brand new class" in LabelingService(demo_project).class_names().values()
    res = _cli("rounds", str(demo_project), "--format", "json")
    rounds = json.loads(res.stdout)["result"]
    assert set(rounds[0]) >= {"round_id", "status", "labels", "finished_at"}


def test_cli_failures_exit_nonzero_with_one_line(tmp_path):
    res = _cli("queue", str(tmp_path / "nothing-here"), "--n", "3")
    assert res.returncode != 0
    assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    res = _cli("queue", str(tmp_path), "--n", "3", "--strategy", "nope")
    assert res.returncode != 0


@pytest.mark.parametrize("target", ["quorum.duckdb", "quorum.duckdb.wal", ".quorum/labels.csv", ".quorum"])
def test_export_refuses_the_projects_own_files(demo_project, target):
    before = (demo_project / "quorum.duckdb").read_bytes()
    res = _cli("export", str(demo_project), "--to", "csv", "--out", str(demo_project / target))
    assert res.returncode != 0
    assert "project's own files" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (demo_project / "quorum.duckdb").read_bytes() == before
    assert LabelingService(demo_project).summary()["items"] == 200  # the project still opens


def test_cli_export_refuses_an_existing_file_unless_overwrite(demo_project, tmp_path):
    out = tmp_path / "mine.csv"
    out.write_text("precious\n")
    res = _cli("export", str(demo_project), "--to", "csv", "--out", str(out))
    assert res.returncode != 0 and "--overwrite" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert out.read_text() == "precious\n"
    res = _cli("export", str(demo_project), "--to", "csv", "--out", str(out), "--overwrite")
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(out)) == 200


def test_tree_export_overwrite_replaces_only_an_earlier_export(demo_project, tmp_path):
    service = LabelingService(demo_project)
    service.label([service.queue(1)[0].item_id], "cat", user="eve")
    images = tmp_path / "holiday-photos"
    images.mkdir()
    (images / "me.jpg").write_bytes(b"not mine to delete")
    with pytest.raises(ValueError, match="not an earlier export"):
        export(service.project, "imagefolder", images, overwrite=True)
    assert (images / "me.jpg").read_bytes() == b"not mine to delete"
    tree = tmp_path / "tree"
    export(service.project, "imagefolder", tree)
    service.label([service.queue(1)[0].item_id], "dog", user="eve")
    with pytest.raises(ValueError, match="exists"):
        export(service.project, "imagefolder", tree)
    export(service.project, "imagefolder", tree, overwrite=True)
    assert sorted(p.name for p in tree.iterdir() if p.is_dir()) == ["cat", "dog"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial or old copy left


@pytest.mark.parametrize("fmt", ["csv", "imagefolder"])
def test_an_interrupted_export_never_looks_complete(demo_project, tmp_path, monkeypatch, fmt):
    from labeling.data import export as export_mod

    service = LabelingService(demo_project)
    service.label([service.queue(1)[0].item_id], "cat", user="eve")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    monkeypatch.setattr(export_mod, "_Placer", lambda link: boom)
    where = tmp_path / "exports"
    where.mkdir()
    with pytest.raises(OSError, match="disk full"):
        export(service.project, fmt, where / ("l.csv" if fmt == "csv" else "tree"))
    assert list(where.iterdir()) == []  # neither the export nor a partial one
