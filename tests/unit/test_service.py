"""The facade's caches follow the data they were built from."""
from __future__ import annotations

from labeling.data.demo import write_images
from labeling.data.importer import import_folder
from labeling.embed.pipeline import embed_project
from labeling.service import LabelingService
from storage import items as items_q


def test_items_embedded_into_a_running_service_get_their_neighbours(demo_project):
    service = LabelingService(demo_project)
    with service.project.db.session() as con:
        before = set(items_q.ok_items(con)[0].tolist())
    assert len(service.neighbours(min(before))) == 12  # the service has read (and cached) its graph
    write_images(service.project.root / "more", limit=40, seed=7)
    import_folder(service.project, service.project.root / "more", progress=False)
    embed_project(service.project, device="cpu", progress=False)  # same backbone: same vector key
    with service.project.db.session() as con:
        new = sorted(set(items_q.ok_items(con)[0].tolist()) - before)
    assert new, "the new images should be new items"
    for item_id in new[:5]:
        got = service.neighbours(item_id)
        assert len(got) == 12 and all(n.item_id != item_id for n in got)
    fresh = LabelingService(demo_project)
    assert [n.item_id for n in service.neighbours(new[0])] == [n.item_id for n in fresh.neighbours(new[0])]


def test_a_label_page_key_press_imports_no_training_library(trained_project):
    """Queue, card, neighbours (from the cached graph), history and a label, in a fresh process: none of
    them imports torch, torchvision, scikit-learn or faiss (the server's first page waited for them)."""
    from conftest import training_libraries_imported

    code = f"""
from labeling import session as facade
service, _ = facade.open_project({str(trained_project)!r}, start_worker=False)
s = facade.Session(service, facade.local_identity(service, "ann"))
item = s.queue(1)[0].item_id
card = s.card(item)
s.neighbours(item, k=12)
s.history(item)
s.label([item], card.pseudo_label, source="accept_suggestion", model_round=card.round_id)
"""
    assert training_libraries_imported(code) == []
