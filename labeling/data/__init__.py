"""Images in: scan folders, probe and thumbnail files, import them (folders, manifests, label files),
export labeled data, build the demo, check and repair a project.

First step of the loop (import → embed → model → active → label → retrain). May import
``labeling.project`` and ``storage``; nothing of the later steps.
"""
