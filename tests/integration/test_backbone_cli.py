"""DINOv2 and CLIP from the command line, offline: ``embed --backbone ... --weights FILE`` with a state dict
saved to a file, the exact message without weights, zero-shot and text search on the real ViT-B/32 CLIP
architecture (random weights), and ``compare-backbones`` on the demo."""
from __future__ import annotations

import json

import pytest
import torch

from labeling.cli import main
from labeling.embed.backbones import get_backbone


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    from labeling.data.demo import create_demo

    root = tmp_path_factory.mktemp("backbones") / "demo"
    create_demo(root, limit=20, device="cpu", progress=False, train=False)
    return root


def _json(capsys, *args):
    assert main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["result"]


def test_dinov2_and_clip_embed_from_saved_state_dicts_and_say_what_is_missing(small_demo, tmp_path, capsys, monkeypatch):
    pytest.importorskip("open_clip")
    dinov2 = tmp_path / "dinov2_vits14.pth"
    torch.save(get_backbone("dinov2_vits14", weights="none").model.net.state_dict(), dinov2)
    got = _json(capsys, "embed", str(small_demo), "--backbone", "dinov2_vits14", "--weights", str(dinov2), "--quiet")
    assert got["backbone"] == "dinov2_vits14" and got["embedded"] == 20

    clip = tmp_path / "clip_vitb32.pt"  # the real ViT-B/32 architecture, random weights, saved in half precision
    torch.save({k: v.half() for k, v in get_backbone("clip_vitb32", weights="none").model.model.state_dict().items()},
               clip)
    got = _json(capsys, "embed", str(small_demo), "--backbone", "clip_vitb32", "--weights", str(clip), "--quiet")
    assert got["backbone"] == "clip_vitb32" and got["embedded"] == 20
    rnd = _json(capsys, "train", str(small_demo), "--no-cv")
    assert rnd["metrics"]["zero_shot"]["prompts"]["zebra"] == "a photo of a zebra"
    hits = _json(capsys, "search", str(small_demo), "a photo of a zebra", "--n", "4")
    assert len(hits) == 4

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for name, where in (("clip_vitb16", "timm/vit_base_patch16_clip_224.openai"),
                        ("dinov2_vitb14", "dinov2_vitb14_pretrain.pth")):
        assert main(["embed", str(small_demo), "--backbone", name, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {name} weights are not on this machine") and where in err and "--weights" in err


def test_compare_backbones_prints_its_table_on_the_demo(small_demo, capsys):
    assert main(["compare-backbones", str(small_demo), "--backbones", "efficientnet_lite0,dinov2_vits14",
                 "--weights", "dinov2_vits14=none", "--sample", "20"]) == 0
    out = capsys.readouterr().out
    assert "20 images sampled" in out and "efficientnet_lite0" in out and "random0" in out
