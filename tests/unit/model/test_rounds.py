"""A trained round: the queue's scores read the same distribution as the shown suggestion."""
from __future__ import annotations

import os

import numpy as np

from labeling.model.rounds import latest_predictions, train_round
from labeling.project import Project
from labeling.service import LabelingService


def test_round_margin_ranks_by_the_shown_top_two(demo_project):
    service = LabelingService(demo_project)
    for k, item in enumerate(service.queue(12)):
        service.label([item.item_id], ("cat", "dog", "horse")[k % 3], user="ann")
    project = Project(demo_project)
    train_round(project, device="cpu", cv=False)
    _, p = latest_predictions(project)
    gap = p.top_p[:, 0] - p.top_p[:, 1]
    assert p.member_weights is not None and abs(float(p.member_weights.sum()) - 1) < 1e-5
    assert len(set(np.round(p.member_weights, 6))) > 1  # heads and propagation do not weigh alike
    np.testing.assert_allclose(p.scores["margin"], 1.0 - gap, atol=1e-5)
    assert int(np.argmax(p.scores["margin"])) == int(np.argmin(gap))
    np.testing.assert_allclose(p.confidence, p.top_p[:, 0], atol=1e-6)


def test_the_worker_writes_predictions_before_cross_validating(trained_project):
    from labeling.model.rounds import cv_file
    from labeling.model.worker import RoundTrainer

    service = LabelingService(trained_project)
    trainer = RoundTrainer(device="cpu", cv=True)
    round_id = trainer(service.project)
    rnd, p = service.predictions()
    assert rnd["id"] == round_id and rnd["metrics"]["cv_status"] == "pending"
    assert "cv_accuracy" not in rnd["metrics"] and not p.cv  # in use, without its held-out figures yet
    assert not cv_file(service.project.round_file(round_id)).exists()
    assert trainer.cross_validate(service.project, lambda: True) is False  # a newer round is due: yields
    assert trainer.pending is not None and service.predictions()[0]["metrics"]["cv_status"] == "pending"
    assert trainer.cross_validate(service.project, lambda: False) is True
    rnd, p = service.predictions()  # the service reloads the round once its figures land
    assert rnd["metrics"]["cv_status"] == "done" and 0.0 <= rnd["metrics"]["cv_accuracy"] <= 1.0
    assert rnd["metrics"]["cv_labels"] == len(p.cv["item_ids"]) == 30
    assert set(p.cv["true"]) <= set(p.class_ids)
    assert trainer.cross_validate(service.project, lambda: False) is None  # nothing left to do


def test_train_round_with_cv_stores_the_same_figures_at_once(trained_project):
    project = Project(trained_project)
    round_id = train_round(project, device="cpu", cv=True)
    rnd, p = latest_predictions(project)
    assert rnd["id"] == round_id and rnd["metrics"]["cv_status"] == "done"
    assert rnd["metrics"]["cv_folds"] >= 2 and len(p.cv["item_ids"]) == rnd["metrics"]["cv_labels"]


def test_the_process_trainer_trains_and_cross_validates_in_its_child(trained_project):
    from labeling.model.trainer_process import ProcessTrainer

    service = LabelingService(trained_project)
    trainer = ProcessTrainer(device="cpu", cv=True)
    try:
        round_id = trainer(service.project)
        child = trainer.pid
        assert child is not None and child != os.getpid()
        assert service.predictions()[0]["id"] == round_id
        assert service.predictions()[0]["metrics"]["cv_status"] == "pending"
        assert trainer.cross_validate(service.project, lambda: True) is False  # yields to a newer round
        assert trainer.cross_validate(service.project, lambda: False) is True
        assert service.predictions()[0]["metrics"]["cv_status"] == "done" and service.predictions()[1].cv
        assert trainer(service.project) > round_id and trainer.pid == child  # the same warm child
        _assert_lower_priority(child)
    finally:
        trainer.close()
    assert trainer.pid is None


def _assert_lower_priority(child: int) -> None:
    """The training process runs below the server, also where Linux shares the cores by session first."""
    from pathlib import Path

    from labeling.model.trainer_process import NICE

    if not Path("/proc/sys/kernel/sched_autogroup_enabled").is_file():
        return
    assert os.getpriority(os.PRIO_PROCESS, child) >= os.getpriority(os.PRIO_PROCESS, 0) + NICE or \
        os.getpriority(os.PRIO_PROCESS, child) == 19
    if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
        assert os.getsid(child) != os.getsid(0)  # a session of its own
        assert Path(f"/proc/{child}/autogroup").read_text().split()[-1] == str(NICE)


def test_a_failed_round_in_the_child_comes_back_as_the_workers_error(trained_project):
    import pytest
    import torch

    from labeling.model.trainer_process import ProcessTrainer

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: the round fails in the child for want of a GPU")
    service = LabelingService(trained_project)
    before = service.predictions()[0]["id"]
    trainer = ProcessTrainer(device="cuda", cv=False)
    try:
        with pytest.raises(RuntimeError, match="CUDA|cuda"):
            trainer(service.project)  # the child says why, and lives on
        assert trainer.pid is not None
        newest = service.rounds()[-1]
        assert newest["status"] == "failed" and "cuda" in newest["error"].lower()
        assert service.predictions()[0]["id"] == before  # the previous round stays in use
    finally:
        trainer.close()


def test_the_training_process_never_opens_the_database(trained_project):
    import pytest

    project = Project.files(trained_project)
    with pytest.raises(RuntimeError, match="never on its database"):
        project.setting("backbone")
    from labeling.model.ensemble import EnsembleConfig
    from labeling.model.learner import LearnerConfig
    from labeling.model.rounds import compute_round, start_round

    full = Project(trained_project)
    start = start_round(full, LearnerConfig(ensemble=EnsembleConfig(seed=0)))
    metrics, _pending = compute_round(project, start, device="cpu", cv=False)  # files only: no error
    assert metrics["n_labels"] == 30 and project.round_file(start.round_id).is_file()


def test_cold_start_rounds_reuse_the_clustering_of_the_vectors(demo_project, monkeypatch):
    """Rounds a label apart in the cold start ask for the same k-means of the same vectors: it is computed by
    the first and read back by the next (it was 3.4 s of a 4.7 s round on the 3,000-image demo)."""
    from labeling.active import coldstart

    fits = []

    real = coldstart.kmeans_labels

    def counting(x, *args, **kwargs):
        fits.append(len(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(coldstart, "kmeans_labels", counting)
    project = Project(demo_project)
    service = LabelingService(demo_project)
    for old in project.cache_dir().glob("clusters-*.npy"):  # the demo's own first round made one
        old.unlink()
    train_round(project, device="cpu", cv=False)
    first = len(fits)
    assert first >= 1
    service.label([service.queue(1)[0].item_id], "cat", user="ann")
    train_round(project, device="cpu", cv=False)
    assert len(fits) == first  # the second round read the clustering back
    assert list(project.cache_dir().glob("clusters-*.npy"))
