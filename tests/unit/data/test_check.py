"""``check``: a damaged project is diagnosed, and repaired from its images."""
from __future__ import annotations

import shutil

from labeling.data.check import check_project
from labeling.cli import main
from labeling.project import Project
from storage import rounds as rounds_q


def test_healthy_demo_project(demo_project):
    report = check_project(Project(demo_project))
    assert report.healthy, report.problems


def test_damage_is_found_then_repaired(demo_project, capsys):
    project = Project(demo_project)
    shutil.rmtree(project.data_dir / "thumbs")
    (project.data_dir / "thumbs").mkdir()
    (project.data_dir / "rounds" / "round-000099.npz.tmp.npz").write_bytes(b"half a file")
    with project.db.session() as con:  # a round left running by a killed server
        rounds_q.start_round(con, n_labels=0, last_event_id=0, backbone="x", vector_version="v", head_config={})
    report = check_project(project)
    text = " ".join(report.problems)
    assert not report.healthy
    assert "thumbnails missing" in text and "temporary files" in text and "left running" in text
    assert main(["check", str(demo_project)]) == 1
    assert main(["check", str(demo_project), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "remade 200 thumbnails" in out
    assert check_project(project).healthy
    assert len(list((project.data_dir / "thumbs").rglob("*.jpg"))) == 200


def test_missing_image_file_is_reported_not_hidden(demo_project):
    project = Project(demo_project)
    victim = next((project.root / "images").glob("*.png"))
    victim.unlink()
    report = check_project(project, repair=True)
    assert any(victim.name in p for p in report.problems)


def test_a_round_in_a_live_worker_is_left_alone(demo_project):
    from labeling.model.worker import _try_lock

    project = Project(demo_project)
    with project.db.session() as con:
        rid = rounds_q.start_round(con, n_labels=0, last_event_id=0, backbone="x", vector_version="v", head_config={})
    with open(project.data_dir / "worker.lock", "a+") as held:  # as a running server's worker holds it
        assert _try_lock(held)
        check_project(project, repair=True)
        with project.db.session() as con:
            assert {r["id"]: r["status"] for r in rounds_q.list_rounds(con)}[rid] == "running"
