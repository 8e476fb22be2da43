"""Predictions to a ranking: acquisition scores (pure functions of ``probs``), batch diversity, cold
start by typicality, the default policy, and the label-efficiency simulation.

Fourth step of the loop. Acquisition and selection import numpy, scipy and scikit-learn only;
``simulate`` may import ``labeling.model``.
"""
