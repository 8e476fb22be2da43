"""Server-side cost of one label action plus everything the next item's render needs.

Builds synthetic projects (clustered vectors, no image files) of a given size, trains one round,
then times: ``label`` (one committed event) + ``queue(1)`` + ``item_card`` + ``neighbours(k=12)``,
which is what the Label page's rerun does after a key press.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from labeling.project import Project
from labeling.model.rounds import train_round
from labeling.service import LabelingService
from storage import items as items_q
from storage import labels as labels_q
from storage import rounds as rounds_q
from storage.vectors import VectorStore


def clustered(n: int, d: int, c: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)).astype(np.float32) * 3
    y = rng.integers(0, c, n)
    return (centres[y] + rng.normal(size=(n, d)).astype(np.float32)), y


def build_project(root: Path, n: int, *, d: int = 128, classes: int = 10, labels: int = 1000, seed: int = 0) -> Project:
    project = Project(root, create=True)
    x, y = clustered(n, d, classes, seed=seed)
    with project.db.session() as con:
        con.execute(
            "INSERT INTO items (uri, sha256, width, height, status) "
            "SELECT 'img/' || i || '.png', md5(i::VARCHAR), 32, 32, 'ok' FROM range(?) t(i)", [n])
        ids, _ = items_q.ok_items(con)
        cls = labels_q.ensure_classes(con, [f"class-{k}" for k in range(classes)], user="bench")
        pick = np.random.default_rng(seed).choice(n, labels, replace=False)
        events = [labels_q.Event(int(ids[i]), cls[f"class-{y[i]}"]) for i in pick]
        labels_q.append_events(con, events, user="bench", source="import", batch_id=str(uuid.uuid4()), model_round=None)
        rounds_q.set_setting(con, "vector_key", "bench")
        rounds_q.set_setting(con, "vector_dim", str(d))
        rounds_q.set_setting(con, "backbone", "bench")
    store = VectorStore(project.vectors_dir("bench"), key="bench", dim=d)
    store.add(ids, x)
    store.compact()
    train_round(project, device="cpu", cv=False)
    return project


def time_actions(root: Path, *, repeats: int = 50) -> np.ndarray:
    service = LabelingService(root)
    names = sorted(service.class_names().values())
    service.queue(1)
    service.neighbours(service.queue(1)[0].item_id)  # warm caches, as a running server has them
    out = []
    for k in range(repeats):
        t0 = time.perf_counter()
        item = service.queue(1)[0]
        service.label([item.item_id], names[k % len(names)], user="bench")
        nxt = service.queue(1)[0]
        service.item_card(nxt.item_id)
        service.neighbours(nxt.item_id, k=12)
        out.append(time.perf_counter() - t0)
    return np.array(out) * 1000


def run(work: Path, *, sizes=(10_000, 100_000), repeats: int = 50, labels: int = 1000) -> list[dict]:
    """``sizes``: item counts (with ``labels`` labels, at most half the items) or ``(items, labels)``."""
    rows = []
    for size in sizes:
        n, n_labels = size if isinstance(size, tuple) else (size, min(labels, size // 2))
        t0 = time.perf_counter()
        root = work / f"interaction-{n}-{n_labels}"
        build_project(root, n, labels=n_labels)
        built = time.perf_counter() - t0
        ms = time_actions(root, repeats=repeats)
        rows.append({"items": n, "labels": n_labels, "p50_ms": float(np.percentile(ms, 50)),
                     "p95_ms": float(np.percentile(ms, 95)), "build_s": built})
    return rows


def card_image_row(work: Path, *, repeats: int = 20) -> dict:
    """The server's time to hand a 12-megapixel phone photo to the Label page's image element, per card.

    Quorum's way: :func:`labeling.data.previews.card_image` (its preview made ahead of time, as the Label
    page does for the next cards) and the element given that preview with its format. Baseline, same
    run: the element given the original file, as the page did before (it resizes and re-encodes it on
    every run). Both through the framework's own ``image_to_url``, which the element calls."""
    from PIL import Image
    from streamlit.elements.lib.image_utils import image_to_url
    from streamlit.elements.lib.layout_utils import LayoutConfig

    from labeling.data.previews import card_image, preview_path

    from bench.suite import row

    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    small = (rng.random((189, 252, 3)) * 255).astype(np.uint8)  # a photo's detail, scaled up: about 3 MB as a JPEG
    photo = work / "photo-4032x3024.jpg"
    Image.fromarray(small).resize((4032, 3024), Image.Resampling.BICUBIC).save(photo, "JPEG", quality=90)
    data_dir = work / ".quorum"
    layout = LayoutConfig(width="stretch")

    def element(path: str, fmt: str) -> None:
        image_to_url(path, layout, False, "RGB", fmt, "bench")

    t0 = time.perf_counter()
    card_image(data_dir, photo)  # the preview, made once (ahead of time in the app)
    made_s = time.perf_counter() - t0
    quorum, bare = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        shown = card_image(data_dir, photo)
        element(shown.path, shown.format)
        quorum.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        element(str(photo), "auto")
        bare.append(time.perf_counter() - t0)
    q, b = float(np.median(quorum)) * 1000, float(np.median(bare)) * 1000
    size = preview_path(data_dir, photo).stat().st_size
    return row("card image: server time per card", f"12-megapixel JPEG ({photo.stat().st_size / 1e6:.1f} MB), "
               f"p50 of {repeats}", q, "ms", "the image element given the original file", b,
               note=f"the preview ({size / 1e3:.0f} kB, 1,280 px) is made once in {made_s * 1000:.0f} ms, in the "
                    "background for the next cards; the original is resized and re-encoded on every run")
