"""Neighbourhoods: the FAISS index (flat, IVF, HNSW; GPU when present), the torch exact search, and the
kNN graph that propagation, typicality and the neighbourhood view share.

Used by the model and the label views. Imports numpy, faiss and torch, and of ours only labeling.device.
"""
