"""A trained round: the queue's scores read the same distribution as the shown suggestion."""
from __future__ import annotations

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
