"""The demo project: Animal-MNIST silhouettes written as PNG files and imported like any folder.

The true classes go to ``.quorum/demo_truth.csv`` for simulation only; they are never labels.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ASSET_NAME = "animal_mnist.npz"
DEFAULT_LIMIT = 3000
"""Images in the demo: enough for a meaningful queue, embedded in well under a minute on 2 cores."""


def asset() -> Path:
    """The bundled Animal-MNIST file (in the source tree's ``assets/``, or the installed copy)."""
    from labeling.paths import install_root

    path = install_root() / "assets" / ASSET_NAME
    if not path.exists():
        raise FileNotFoundError(f"bundled data set missing: {path}")
    return path


def load_animal_mnist() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, 28, 28) uint8, labels (N,), class names) from the bundled asset."""
    with np.load(asset()) as z:
        return z["images"], z["labels"], [str(c) for c in z["classes"]]


def demo_classes() -> list[str]:
    """The demo's ten animal names, in the data set's order (their keys 1-9 and 0 on the Label page)."""
    with np.load(asset()) as z:
        return [str(c) for c in z["classes"]]


def write_images(dest: Path, *, limit: int = DEFAULT_LIMIT, seed: int = 0, class_folders: bool = False) -> list[tuple[Path, str]]:
    """Write a class-balanced sample of Animal-MNIST as PNGs; returns (path, true class)."""
    images, labels, classes = load_animal_mnist()
    rng = np.random.default_rng(seed)
    per_class = max(1, limit // len(classes))
    chosen = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(len(classes))])
    chosen = rng.permutation(chosen)[:limit]
    out = []
    for k, idx in enumerate(chosen):
        name = classes[int(labels[idx])]
        folder = dest / name if class_folders else dest
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"animal_{k:05d}.png"
        if not path.exists():
            Image.fromarray(images[idx]).save(path)
        out.append((path, name))
    return out


def create_demo(root: str | Path, *, limit: int = DEFAULT_LIMIT, device: str = "auto", train: bool = True,
                progress: bool | Callable[[int, int], None] = True) -> dict:
    """Create (or complete) the demo project in ``root``: images, import, embed, first round."""
    from labeling.data.importer import declare_classes, import_folder
    from labeling.embed.pipeline import embed_project
    from labeling.project import Project
    from labeling.model.rounds import train_round

    project = Project(root, create=True)
    written = write_images(project.root / "images", limit=limit)
    truth = project.data_dir / "demo_truth.csv"
    with open(truth, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["uri", "true_class"])
        for path, name in written:
            w.writerow([path.relative_to(project.root).as_posix(), name])
    summary = import_folder(project, project.root / "images", progress=progress)
    declare_classes(project, demo_classes(), user="demo")  # the first key press labels: 1-9 and 0 are the ten animals
    emb = embed_project(project, device=device, progress=progress)
    round_id = train_round(project, device=device) if train else None
    return {"root": str(project.root), "imported": summary.added, "embedded": emb, "round_id": round_id}
