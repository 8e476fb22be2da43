"""DINOv2 (timm) and CLIP (open_clip) backbones, zero-shot suggestions and text search, offline: the real
loading code on seeded random models (a tiny CLIP registered for the tests), state dicts saved to a
temporary file and loaded the way a user's file is, and zero-shot on vectors that agree by construction."""
from __future__ import annotations

import json
import numpy as np
import pytest
import torch

from labeling.embed import backbones, foundation
from labeling.embed.backbones import BackboneUnavailable, get_backbone
from labeling.cli_json import problems
from labeling.model import zero_shot

def test_dinov2_loads_a_saved_state_dict_through_the_users_path(tmp_path):
    random = get_backbone("dinov2_vits14", weights="none")
    path = tmp_path / "dinov2.pth"
    torch.save(random.model.net.state_dict(), path)
    loaded = get_backbone("dinov2_vits14", weights=path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), random.model(x), atol=1e-5)
    assert loaded.dim == 384 and loaded.fingerprint.startswith("dinov2_vits14.file-")


def test_backbones_without_weights_say_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(BackboneUnavailable) as got:
        get_backbone("dinov2_vitb14")
    text = str(got.value)
    assert "timm/vit_base_patch14_dinov2.lvd142m/resolve/main/model.safetensors" in text
    assert str(tmp_path / "hub" / "checkpoints" / "dinov2_vitb14_pretrain.pth") in text and "--weights PATH" in text
    pytest.importorskip("open_clip")
    with pytest.raises(BackboneUnavailable, match=r"vit_base_patch32_clip_224\.openai.*--weights PATH"):
        get_backbone("clip_vitb32")


def test_a_tiny_clip_loads_from_a_file_and_its_text_tower_encodes(tiny_clip):
    loaded = get_backbone("clip_tiny", weights=tiny_clip)
    random = get_backbone("clip_tiny", weights="none")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), random.model(x), atol=1e-5)
    tower = foundation.text_tower("clip_tiny", str(tiny_clip))
    vectors = tower.encode(["a photo of a cat", "a photo of a dog"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert tower.logit_scale > 1


def test_zero_shot_follows_image_text_agreement_and_fits_its_temperature():
    rng = np.random.default_rng(0)
    texts = np.linalg.qr(rng.standard_normal((16, 3)))[0].T.astype(np.float32)  # 3 orthonormal class prompts
    truth = rng.integers(0, 3, 60)
    images = texts[truth] + 0.3 * rng.standard_normal((60, 16)).astype(np.float32)  # each near its class's text
    cos = zero_shot.cosine(images, texts)
    probs = zero_shot.softmax(100.0 * cos)
    assert (probs.argmax(axis=1) == truth).mean() > 0.9
    labels = np.full(60, -1)
    labels[:10] = truth[:10]
    assert zero_shot.fit_scale(cos, labels, default=100.0) in zero_shot.SCALE_GRID
    assert zero_shot.fit_scale(cos, np.full(60, -1), default=77.0) == 77.0  # no labels: the model's own


def test_prompts_default_to_the_class_name_and_can_be_set_and_reset(small_project):
    from labeling.data.importer import declare_classes

    declare_classes(small_project, ["cat", "dog"])
    assert zero_shot.prompt_for("cat", zero_shot.read_prompts(small_project)) == "a photo of a cat"
    zero_shot.set_prompt(small_project, "cat", "a close-up photo of a {name}")
    assert zero_shot.prompt_for("cat", zero_shot.read_prompts(small_project)) == "a close-up photo of a cat"
    zero_shot.set_prompt(small_project, "cat", "")
    assert zero_shot.read_prompts(small_project) == {}
    with pytest.raises(LookupError):
        zero_shot.set_prompt(small_project, "emu", "x")
    with pytest.raises(ValueError, match="one line"):
        zero_shot.set_prompt(small_project, "dog", "a\nb")


def test_with_a_clip_backbone_and_no_label_the_card_shows_zero_shot_and_search_ranks_by_text(
        tiny_clip, demo_project, capsys):
    from labeling.cli import main
    from labeling.embed.pipeline import embed_project
    from labeling.model.rounds import train_round
    from labeling.search.text import search
    from labeling.service import LabelingService

    service = LabelingService(demo_project)
    embed_project(service.project, backbone="clip_tiny", weights=str(tiny_clip), device="cpu", progress=False)
    assert service.project.setting("backbone_weights") == str(tiny_clip.resolve())
    train_round(service.project, device="cpu", cv=False)
    service = LabelingService(demo_project)
    rnd, preds = service.predictions()
    assert preds.model_names == ["zero-shot"] and rnd["metrics"]["zero_shot"]["prompts"]["cat"] == "a photo of a cat"
    card = service.item_card(service.queue(1)[0].item_id)
    assert card.pseudo_label is not None and card.models[0][0] == "zero-shot"
    assert service.summary()["labels"] == 0  # suggestions, not labels

    hits = search(service.project, "a photo of a zebra", n=5)
    assert len(hits) == 5 and [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert main(["search", str(demo_project), "a photo of a zebra", "--n", "3", "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)["result"]
    assert [r["item_id"] for r in got] == [h.item_id for h in hits[:3]] and problems("search", got) == []


def test_text_search_without_clip_says_what_it_needs(demo_project):
    from labeling.project import Project
    from labeling.search.text import search

    with pytest.raises(ValueError, match="needs a CLIP backbone"):
        search(Project(demo_project), "a cat")


def test_compare_backbones_reports_label_free_figures_and_unavailable_ones(demo_project):
    from labeling.embed.compare import compare_backbones, format_table
    from labeling.project import Project
    from labeling.service import LabelingService

    service = LabelingService(demo_project)
    with open(demo_project / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        import csv
        rows = sorted((r["uri"], r["true_class"]) for r in csv.DictReader(fh))[:40]
    service.label_table([{"uri": u, "label": c} for u, c in rows], user="t")
    out = compare_backbones(Project(demo_project), names=["efficientnet_lite0", "dinov2_vits14", "resnet18"],
                            sample=40, weights={"dinov2_vits14": "none"}, device="cpu")
    by = {r["backbone"]: r for r in out["backbones"]}
    assert by["resnet18"]["status"].startswith("unavailable: resnet18 weights are not on this machine")
    lite, rand = by["efficientnet_lite0"], by["dinov2_vits14"]
    assert lite["effective_rank"] > rand["effective_rank"]  # trained features spread; random ones collapse
    assert 0 <= lite["knn_agreement"] <= 1 and lite["cv_accuracy"] is not None
    assert "efficientnet_lite0" in format_table(out)
    assert problems("compare-backbones", json.loads(json.dumps(out))) == []


def test_mobileclip_builds_with_its_own_preprocessing_and_names_its_weights():
    pytest.importorskip("open_clip")
    got = get_backbone("clip_mobileclip_s2", weights="none")
    with torch.no_grad():
        assert got.model(torch.randn(1, 3, 256, 256)).shape == (1, 512)
    from PIL import Image
    white = got.transform(Image.new("RGB", (300, 300), (255, 255, 255)))
    assert white.shape == (3, 256, 256) and torch.allclose(white, torch.ones_like(white))  # mean 0, std 1: no shift
    with pytest.raises(BackboneUnavailable, match="apple/MobileCLIP-S2-OpenCLIP"):
        get_backbone("clip_mobileclip_s2")
