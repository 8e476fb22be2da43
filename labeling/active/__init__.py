"""Predictions to a ranking: acquisition scores (pure functions of ``probs``), batch diversity, cold
start by typicality, the default policy, and the label-efficiency simulation.

Fourth step of the loop. Acquisition imports numpy and scipy only; cold start and selection add
scikit-learn and ``labeling.search``; ``queue_order`` (the queue's orders and filters) and ``simulate``
may import ``labeling.model``, and its trust
measurement (``trust``) ``labeling.team.autoaccept`` too, so that it scores the app's own auto-accept.
"""
