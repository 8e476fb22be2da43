"""The Model page's facade (``Session.model``): rounds, per-class figures, calibration, auto-accept and
its certification by a checked sample."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labeling.session import Session


class ModelView:
    """The Model page: rounds, per-class figures, calibration and auto-accept (``Session.model``)."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.service = session.service

    def summary(self) -> dict:
        return self.service.summary()

    def failed_after_current(self) -> dict | None:
        from labeling.views import model_report

        return model_report.failed_after_current(self.service)

    def round_history(self):
        from labeling.views import model_report

        return model_report.round_history(self.service)

    def per_class_report(self):
        from labeling.views import model_report

        return model_report.per_class_report(self.service)

    def reliability(self, *, n_bins: int = 10):
        from labeling.views import model_report

        return model_report.reliability(self.service, n_bins=n_bins)

    def auto_accept_plan(self, *, target_precision: float = 0.95, min_support: int = 5):
        from labeling.views import model_report

        return model_report.auto_accept_plan(self.service, target_precision=target_precision, min_support=min_support)

    def audit(self, plan, *, n: int = 12, seed: int = 0):
        from labeling.views import model_report

        return model_report.audit(self.service, plan, n=n, seed=seed)

    def accept(self, candidates, *, model_round: int | None = None):
        """Label the plan's candidates with their suggestions as one undoable batch."""
        from labeling.views import model_report

        return model_report.accept_batch(self.service, candidates, user=self.session.who.name, model_round=model_round)

    # ---- auto-accept certified by a checked sample (``labeling.views.certification``) ----
    def certify_proposal(self, *, target: float):
        from labeling.views import certification

        return certification.propose(self.service, target=target)

    def certification(self):
        from labeling.views import certification

        return certification.current(self.service)

    def start_certification(self, proposal, *, seed: int | None = None):
        from labeling.views import certification

        return certification.start(self.service, proposal, user=self.session.who.name, seed=seed)

    def record_checks(self, *, right=(), wrong=()):
        from labeling.views import certification

        return certification.record_checks(self.service, right=right, wrong=wrong, user=self.session.who.name)

    def accept_certified(self):
        from labeling.views import certification

        return certification.accept(self.service, user=self.session.who.name)

    def cancel_certification(self) -> None:
        from labeling.views import certification

        certification.cancel(self.service)

    def check_cards(self, cert, item_ids):
        """Image, proposed class and confidence of the certification's items ``item_ids``."""
        from labeling.views import model_report

        by_id = {c.item_id: c for c in cert.batch}
        return model_report.candidate_cards(self.service, [by_id[int(i)] for i in item_ids],
                                            self.service.class_names())

    def imported_models(self) -> list[dict]:
        """People's own models (``import-predictions``): setting, share and accuracy in the newest round."""
        from labeling.data.predictions import models_table

        return models_table(self.service.project)

    def set_model_weight(self, name: str, weight: str | float) -> dict:
        """``auto``, ``off`` or a fixed share in [0, 1] for an imported model; reviewers."""
        from labeling.data.predictions import set_model_weight

        self.session.require("reviewer", "weigh an imported model")
        return set_model_weight(self.service.project, name, weight)
