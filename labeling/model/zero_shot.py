"""Zero-shot suggestions from class names, with a CLIP backbone.

Every class has a text prompt (``a photo of a {name}`` unless a person edits it: the Data page, or
``python -m labeling prompts``). The prompts go through the CLIP text tower once (cached in
``.quorum/cache/text-<hash>.npy`` until a prompt, a class or the weights change); each image's
distribution over the round's classes is the softmax of its cosine similarity to each prompt, times a
temperature: CLIP's own (``exp(logit_scale)``, about 100) until five human labels allow fitting one on
them (lowest log-loss on a grid).

The result is one ensemble member, ``zero-shot``, joined like an imported model
(:mod:`labeling.model.external`): before two classes have labels it alone makes the suggestions, shown
as zero-shot; as labels arrive its share is learned from its accuracy on them against the heads', so it
fades when the heads know better (in the spirit of "Enhancing CLIP with CLIP" and the training-free
CLIP baselines in PAPERS.md).
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache

import numpy as np

from labeling.model.external import Member
from labeling.project import Project

DEFAULT_PROMPT = "a photo of a {name}"
NAME = "zero-shot"
SCALE_GRID = (10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0)
MIN_LABELS_FOR_TEMPERATURE = 5
PROMPTS_SETTING = "class_prompts"


def prompt_for(name: str, prompts: dict[str, str]) -> str:
    """The prompt of class ``name``: the one a person set, else :data:`DEFAULT_PROMPT`, with ``{name}`` replaced
    by the class name."""
    return (prompts.get(name) or DEFAULT_PROMPT).replace("{name}", name)


def read_prompts(project: Project) -> dict[str, str]:
    """Class name -> the prompt a person set (classes without one use the default)."""
    text = project.setting(PROMPTS_SETTING)
    return json.loads(text) if text else {}


def set_prompt(project: Project, class_name: str, prompt: str | None) -> dict[str, str]:
    """Set (or, with None / empty, reset to the default) one class's prompt; returns every set prompt."""
    from storage import labels as labels_q

    with project.db.session() as con:
        known = {c.name for c in labels_q.classes(con)}
    if class_name not in known:
        raise LookupError(f"no class {class_name!r}")
    prompts = read_prompts(project)
    text = (prompt or "").strip()
    if len(text) > 300 or any(ord(ch) < 32 for ch in text):
        raise ValueError("a prompt is one line of at most 300 characters")
    if text:
        prompts[class_name] = text
    else:
        prompts.pop(class_name, None)
    project.set_setting(PROMPTS_SETTING, json.dumps(prompts, ensure_ascii=False, sort_keys=True))
    return prompts


@lru_cache(maxsize=2)
def _tower(backbone: str, weights: str | None):
    """The text tower, loaded once per process (a search per key press must not reload the model)."""
    from labeling.embed.foundation import text_tower

    return text_tower(backbone, weights)


def text_vectors(project: Project, backbone: str, weights: str | None, texts: list[str], *,
                 keep: bool = True) -> tuple[np.ndarray, float]:
    """(the texts through the backbone's CLIP text tower, unit rows; the model's own temperature). With
    ``keep`` (class prompts) the result is cached on disk per backbone, weights and texts; search queries
    are not kept."""
    key = hashlib.sha256(json.dumps([backbone, weights, texts]).encode()).hexdigest()[:20]
    path = project.data_dir / "cache" / f"text-{key}.npz"
    if keep and path.is_file():
        with np.load(path) as z:
            return z["vectors"], float(z["scale"])
    tower = _tower(backbone, weights)
    vectors, scale = tower.encode(texts), tower.logit_scale
    if not keep:
        return vectors, scale
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, vectors=vectors, scale=scale)
    tmp.replace(path)
    return vectors, scale


def cosine(images: np.ndarray, texts: np.ndarray, *, chunk: int = 65_536) -> np.ndarray:
    """(N, C) cosine similarity of each image vector to each (unit) text vector."""
    out = np.empty((len(images), len(texts)), dtype=np.float32)
    for s in range(0, len(images), chunk):
        block = np.asarray(images[s:s + chunk], np.float32)
        block = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        out[s:s + chunk] = block @ texts.T
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_scale(cos: np.ndarray, labels: np.ndarray, default: float) -> float:
    """The temperature with the lowest log-loss on the human labels (``labels``: column, -1 unlabeled), or
    ``default`` with fewer than :data:`MIN_LABELS_FOR_TEMPERATURE` of them."""
    rows = np.flatnonzero(labels >= 0)
    if len(rows) < MIN_LABELS_FOR_TEMPERATURE:
        return default
    best, best_nll = default, None
    for scale in SCALE_GRID:
        p = softmax(scale * cos[rows])
        nll = float(-np.log(np.clip(p[np.arange(len(rows)), labels[rows]], 1e-9, 1.0)).mean())
        if best_nll is None or nll < best_nll - 1e-9:
            best, best_nll = scale, nll
    return float(best)


def member(project: Project, backbone: str, weights: str | None, prompts: dict[str, str], raw_vectors: np.ndarray,
           class_names: list[str], labels: np.ndarray) -> tuple[Member, dict]:
    """The zero-shot member over the round's classes, and what it rests on (for the round's metrics)."""
    texts = [prompt_for(n, prompts) for n in class_names]
    vectors, own_scale = text_vectors(project, backbone, weights, texts)
    cos = cosine(raw_vectors, vectors)
    scale = fit_scale(cos, labels, own_scale)
    probs = softmax(scale * cos)
    return (Member(NAME, probs, np.ones(len(probs), dtype=bool), None),
            {"temperature": scale, "prompts": dict(zip(class_names, texts))})
