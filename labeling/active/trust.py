"""What ``simulate`` measures beside accuracy: can a person trust the suggestions?

At each budget of a replay, with the labels picked so far:

- auto-accept as the app does it: cross-validate the learner on the human labels
  (``labeling.model.rounds.cross_validate``), choose the thresholds with
  ``labeling.team.autoaccept.select_thresholds``, then measure on the test items (whose labels
  the replay never reveals) the true precision and the coverage of what would be accepted;
- auto-accept certified by checking a sample (``labeling.team.certify``): the batch of most
  confident test items the app would offer, a uniform sample of it checked by the oracle, and,
  when every check is right, the true precision and coverage of the rest; the checks are counted;
- the expected calibration error of the confidence shown (raw), and of the confidence calibrated
  on the held-out predictions;
- scikit-learn baselines trained on the same labels: LogisticRegression and RandomForest.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from labeling.model.learner import LearnerConfig, Prediction, with_fixed_blend
from labeling.model.rounds import cross_validate, expected_calibration_error
from labeling.team import certify
from labeling.team.autoaccept import Calibrator, fit_isotonic, select_thresholds

BASELINES = ("logreg", "forest")


def parse_targets(text: str | Sequence[float] | None) -> list[float]:
    """``"0.95,0.97"`` -> ``[0.95, 0.97]``; each target must lie in (0, 1)."""
    if text is None or text == "":
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        targets = [float(p) for p in parts]
    except ValueError as exc:
        raise ValueError(f"auto-accept targets must be numbers like 0.95,0.97; got {text!r}") from exc
    bad = [t for t in targets if not 0.0 < t < 1.0]
    if bad:
        raise ValueError(f"auto-accept targets must lie in (0, 1); got {bad}")
    return sorted(set(targets))


def baseline_accuracy(x: np.ndarray, labels: np.ndarray, y: np.ndarray, test: np.ndarray, *,
                      seed: int) -> dict[str, float]:
    """Test accuracy of LogisticRegression and RandomForest trained on the labeled rows only."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    train = labels >= 0
    out = {}
    models = {"logreg": LogisticRegression(max_iter=2000),
              "forest": RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)}
    for name, model in models.items():
        if len(np.unique(labels[train])) < 2:
            out[name] = float("nan")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x[train], labels[train])
        out[name] = float((model.predict(x[test]) == y[test]).mean())
    return out


def auto_accept_on_test(rule, pred_test: np.ndarray, conf_test: np.ndarray, y_test: np.ndarray) -> tuple[float, float]:
    """True precision (NaN when nothing is accepted) and coverage of ``rule`` on the test items."""
    limit = np.full(len(pred_test), np.inf)
    for c, t in rule.thresholds().items():
        if t is not None:
            limit[pred_test == c] = t
    accepted = conf_test >= limit
    precision = float((pred_test[accepted] == y_test[accepted]).mean()) if accepted.any() else float("nan")
    return precision, float(accepted.mean())


def certified_on_test(target: float, pred_test: np.ndarray, conf_test: np.ndarray, y_test: np.ndarray,
                      calibrator: Calibrator, *, seed: int, held: tuple = ((), ())) -> dict[str, float]:
    """Auto-accept certified by a sample, as the Model page offers it, on the test items.

    The batch is cut from the test items by confidence (``certify.choose_level`` on the confidences
    calibrated on held-out labels and the held-out predictions ``held``: confidence, correct),
    ``certify.audit_size`` of them are drawn uniformly and checked
    against the truth, and only a flawless sample accepts the rest. Returns ``precision`` (true, of
    the accepted rest; NaN when nothing is accepted), ``coverage`` (accepted share of the test
    items), ``checks`` (items checked, 0 when no batch was offered) and ``certified`` (1, 0, or NaN
    when no batch was offered).
    """
    order = np.argsort(-conf_test, kind="stable")
    size = certify.choose_level(conf_test[order], calibrator(conf_test[order]), target, held_confidence=held[0],
                                held_correct=held[1])
    n = certify.audit_size(size, target) if size else None
    if n is None:
        return {"precision": float("nan"), "coverage": 0.0, "checks": 0.0, "certified": float("nan")}
    batch = order[:size]
    sample = np.array(certify.draw_sample(batch.tolist(), n, seed=seed))
    if (pred_test[sample] != y_test[sample]).any():
        return {"precision": float("nan"), "coverage": 0.0, "checks": float(n), "certified": 0.0}
    rest = np.setdiff1d(batch, sample)
    return {"precision": float((pred_test[rest] == y_test[rest]).mean()), "coverage": len(rest) / len(pred_test),
            "checks": float(n), "certified": 1.0}


def measure(x: np.ndarray, graph, labels: np.ndarray, y: np.ndarray, test: np.ndarray, pred: Prediction,
            cfg: LearnerConfig, device: str, targets: Sequence[float], *, seed: int) -> dict[str, float]:
    """Every trust figure of one (repeat, strategy, budget) case, as a flat ``name -> value`` dict.

    Keys: ``ece`` and ``ece_calibrated`` (test items), ``logreg`` and ``forest`` (test accuracy),
    and per target ``t``: ``precision@t`` (true, NaN when nothing is accepted), ``coverage@t``
    (share of test items accepted), ``bound@t`` (the lower bound the rule promised, NaN without),
    and the same for certification by a checked sample: ``cert_precision@t``, ``cert_coverage@t``,
    ``cert_checks@t`` and ``cert_certified@t`` (``certified_on_test``).
    """
    n_classes = pred.probs.shape[2]
    mean = pred.mean[test]
    pred_test, conf_test = mean.argmax(axis=1), mean.max(axis=1).astype(np.float64)
    right = pred_test == y[test]
    out = {"ece": expected_calibration_error(conf_test, right)}
    out.update(baseline_accuracy(x, labels, y, test, seed=seed))
    got = cross_validate(x, labels, n_classes, graph, with_fixed_blend(cfg, pred), device, seed=seed)
    held = got[1] if got is not None else {}
    if not held:
        out["ece_calibrated"] = float("nan")
        for t in targets:
            out.update({f"precision@{t}": float("nan"), f"coverage@{t}": 0.0, f"bound@{t}": float("nan"),
                        f"cert_precision@{t}": float("nan"), f"cert_coverage@{t}": 0.0, f"cert_checks@{t}": 0.0,
                        f"cert_certified@{t}": float("nan")})
        return out
    correct = held["predicted"] == held["true"]
    calibrator = fit_isotonic(held["confidence"], correct)
    for k, t in enumerate(targets):
        rule = select_thresholds(held["confidence"], held["predicted"], correct, target=t, classes=range(n_classes))
        precision, coverage = auto_accept_on_test(rule, pred_test, conf_test, y[test])
        out.update({f"precision@{t}": precision, f"coverage@{t}": coverage,
                    f"bound@{t}": float("nan") if rule.lower is None else rule.lower})
        got = certified_on_test(t, pred_test, conf_test, y[test], calibrator, seed=seed * 1000 + k,
                                held=(held["confidence"], correct))
        out.update({f"cert_{key}@{t}": v for key, v in got.items()})
    out["ece_calibrated"] = expected_calibration_error(calibrator(conf_test), right)
    return out


def summarise(cases: list[list[dict[str, float]]], targets: Sequence[float]) -> dict:
    """Per-budget summaries over repeats of ``cases[repeat][budget]``.

    Returns a dict of lists (one value per budget): ``ece_mean``, ``ece_calibrated_mean``,
    ``logreg_accuracy_mean``/``_std``, ``forest_accuracy_mean``/``_std``, and ``auto_accept``:
    ``{target: {precision_mean, precision_min, coverage_mean, bound_mean, met, cases}}`` where ``met``
    counts the repeats whose accepted test items reached the target (nothing accepted counts as met:
    no wrong label was written) out of ``cases``; where certification was measured, ``certified``:
    the same for the checked-sample route, with ``checks_mean`` (over the cases it was offered),
    ``offered`` and ``passed`` (cases).
    """
    def col(key: str) -> np.ndarray:
        return np.array([[case[key] for case in rep] for rep in cases], dtype=np.float64)  # (R, B)

    def nanstat(fn, a: np.ndarray) -> list:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return [None if np.isnan(v) else float(v) for v in fn(a, axis=0)]

    out = {"ece_mean": nanstat(np.nanmean, col("ece")), "ece_calibrated_mean": nanstat(np.nanmean, col("ece_calibrated"))}
    for b in BASELINES:
        out[f"{b}_accuracy_mean"] = nanstat(np.nanmean, col(b))
        out[f"{b}_accuracy_std"] = nanstat(np.nanstd, col(b))
    out["auto_accept"] = {}
    for t in targets:
        prec = col(f"precision@{t}")
        met = np.where(np.isnan(prec), True, prec >= t - 1e-12)
        out["auto_accept"][str(t)] = {
            "precision_mean": nanstat(np.nanmean, prec), "precision_min": nanstat(np.nanmin, prec),
            "coverage_mean": nanstat(np.nanmean, col(f"coverage@{t}")),
            "bound_mean": nanstat(np.nanmean, col(f"bound@{t}")),
            "met": met.sum(axis=0).astype(int).tolist(), "cases": [len(cases)] * prec.shape[1]}
        if f"cert_precision@{t}" in cases[0][0]:
            cert, offered = col(f"cert_precision@{t}"), ~np.isnan(col(f"cert_certified@{t}"))
            met = np.where(np.isnan(cert), True, cert >= t - 1e-12)
            out["auto_accept"][str(t)]["certified"] = {
                "precision_mean": nanstat(np.nanmean, cert), "precision_min": nanstat(np.nanmin, cert),
                "coverage_mean": nanstat(np.nanmean, col(f"cert_coverage@{t}")),
                "checks_mean": nanstat(np.nanmean, np.where(offered, col(f"cert_checks@{t}"), np.nan)),
                "passed": np.nansum(col(f"cert_certified@{t}"), axis=0).astype(int).tolist(),
                "offered": offered.sum(axis=0).astype(int).tolist(),
                "met": met.sum(axis=0).astype(int).tolist(), "cases": [len(cases)] * cert.shape[1]}
    return out


def _pct(v) -> str:
    return f"{'-':>12}" if v is None else f"{v * 100:>12.1f}"


def _section(title: str, budgets) -> list[str]:
    head = f"{'':<30}" + "".join(f"{b:>12}" for b in budgets)
    return ["", title, head, "-" * len(head)]


def _auto_accept_lines(name: str, aa: dict) -> list[str]:
    return [f"{name + ' precision':<30}" + "".join(_pct(v) for v in aa["precision_mean"]),
            f"{name + ' precision min':<30}" + "".join(_pct(v) for v in aa["precision_min"]),
            f"{name + ' coverage':<30}" + "".join(_pct(v) for v in aa["coverage_mean"]),
            f"{name + ' met':<30}" + "".join(f"{f'{m}/{c}':>12}" for m, c in zip(aa["met"], aa["cases"]))]


def _certified_lines(name: str, ce: dict) -> list[str]:
    return [f"{name + ' precision':<30}" + "".join(_pct(v) for v in ce["precision_mean"]),
            f"{name + ' precision min':<30}" + "".join(_pct(v) for v in ce["precision_min"]),
            f"{name + ' coverage':<30}" + "".join(_pct(v) for v in ce["coverage_mean"]),
            f"{name + ' checks':<30}" + "".join(f"{'-' if v is None else f'{v:.0f}':>12}" for v in ce["checks_mean"]),
            f"{name + ' certified/offered':<30}" + "".join(f"{f'{p}/{o}':>12}" for p, o in zip(ce["passed"], ce["offered"])),
            f"{name + ' met':<30}" + "".join(f"{f'{m}/{c}':>12}" for m, c in zip(ce["met"], ce["cases"]))]


def format_trust(result: dict) -> str:
    """The trust tables of a ``simulate`` result (empty when it measured none)."""
    budgets = result["budgets"]
    rows = [(name, r["trust"]) for name, r in result["results"].items() if "trust" in r]
    if not rows:
        return ""
    lines = _section("baselines (same labels), test accuracy %", budgets)
    for name, tr in rows:
        lines.append(f"{name + ' logreg':<30}" + "".join(_pct(v) for v in tr["logreg_accuracy_mean"]))
        lines.append(f"{name + ' forest':<30}" + "".join(_pct(v) for v in tr["forest_accuracy_mean"]))
    lines += _section("calibration error of the shown confidence (ECE %), raw / calibrated", budgets)
    for name, tr in rows:
        lines.append(f"{name + ' raw':<30}" + "".join(_pct(v) for v in tr["ece_mean"]))
        lines.append(f"{name + ' calibrated':<30}" + "".join(_pct(v) for v in tr["ece_calibrated_mean"]))
    for t in result.get("auto_accept_targets", []):
        lines += _section(f"auto-accept at target {t}: true precision % (min) / coverage % / target met", budgets)
        for name, tr in rows:
            lines += _auto_accept_lines(name, tr["auto_accept"][str(t)])
        certified = [(name, tr["auto_accept"][str(t)].get("certified")) for name, tr in rows]
        if any(ce for _, ce in certified):
            lines += _section(f"certified by a checked sample at target {t}: true precision % (min) / coverage % / "
                              "checks / certified of offered / target met", budgets)
            for name, ce in certified:
                if ce:
                    lines += _certified_lines(name, ce)
    return "\n".join(lines)
