"""Vectors and labels to predictions: the ensemble heads, label propagation, the learner that blends
them, a round (snapshot → train → score → write) and the background retrain worker.

Third step of the loop. May import ``labeling.project``, ``labeling.device``, ``labeling.embed`` (vectors),
``labeling.search`` (the kNN graph), ``labeling.active`` (scores and the ranking policy),
``labeling.team`` (overlap rules) and ``storage``.
"""
