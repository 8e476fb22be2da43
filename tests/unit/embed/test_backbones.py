import numpy as np
import pytest
import torch
from PIL import Image

from labeling.embed import backbones
from labeling.embed.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    BackboneUnavailable,
    get_backbone,
    hub_cache_file,
    list_backbones,
)

SIZE = 64


def picture(seed, size=(40, 30)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def features(backbone, images):
    x = torch.stack([backbone.transform(im) for im in images])
    with torch.inference_mode():
        return backbone.model(x).numpy()


@pytest.fixture(scope="module")
def lite0():
    return get_backbone("efficientnet_lite0", image_size=SIZE)


@pytest.fixture(scope="module")
def lite0_file():
    return backbones._packaged_lite0_file()


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty hub cache, and any download attempt fails the test."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))

    def forbidden(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)
    return hub


def test_registry_lists_default_first():
    names = [s.name for s in list_backbones()]
    assert names[0] == DEFAULT_BACKBONE == "efficientnet_lite0"
    assert set(names) == {"efficientnet_lite0", "resnet18", "resnet50", "efficientnet_b0",
                          "convnext_tiny", "vit_b_16", "dinov2_vits14", "dinov2_vitb14", "clip_vitb32", "clip_vitb16",
                          "clip_vitb32_laion", "clip_mobileclip_s2"}
    with pytest.raises(TypeError):
        BACKBONES["x"] = BACKBONES["resnet18"]


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*efficientnet_lite0.*resnet18"):
        get_backbone("nope")


def test_lite0_packaged_weights_load_into_the_right_layers(lite0, lite0_file):
    packaged = torch.load(lite0_file, map_location="cpu", weights_only=True)
    net = lite0.model.net
    pairs = {
        "conv_stem.weight": "_conv_stem.weight",
        "bn1.running_mean": "_bn0.running_mean",
        "blocks.0.0.conv_dw.weight": "_blocks.0._depthwise_conv.weight",
        "blocks.0.0.conv_pw.weight": "_blocks.0._project_conv.weight",
        "blocks.1.0.conv_pw.weight": "_blocks.1._expand_conv.weight",
        "blocks.5.3.bn3.running_var": "_blocks.14._bn2.running_var",
        "blocks.6.0.conv_pwl.weight": "_blocks.15._project_conv.weight",
        "conv_head.weight": "_conv_head.weight",
        "bn2.weight": "_bn1.weight",
        "classifier.bias": "_fc.bias",
    }
    mine = net.state_dict()
    for timm_key, packaged_key in pairs.items():
        torch.testing.assert_close(mine[timm_key], packaged[packaged_key], rtol=0, atol=0)
    x = torch.stack([lite0.transform(picture(s)) for s in range(2)])
    with torch.inference_mode():
        assert net(x).shape == (2, 1000)
        assert lite0.model(x).shape == (2, 1280)


def test_lite0_rename_is_a_bijection_onto_timm_keys(lite0, lite0_file):
    packaged = torch.load(lite0_file, map_location="cpu", weights_only=True)
    renamed = backbones._rename_lite0_keys(packaged, [len(s) for s in lite0.model.net.blocks])
    assert len(renamed) == len(packaged)
    assert set(renamed) == set(lite0.model.net.state_dict())


def test_lite0_features_are_deterministic_and_discriminative(lite0):
    a, b = picture(1), picture(2)
    f = features(lite0, [a, b, a])
    assert f.shape == (3, lite0.dim) == (3, 1280)
    assert f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_array_equal(f[0], f[2])
    assert np.abs(f[0] - f[1]).max() > 1e-3


def test_lite0_default_size_and_fingerprint(lite0):
    spec = BACKBONES["efficientnet_lite0"]
    assert spec.image_size == backbones.LITE0_IMAGE_SIZE == 112
    assert lite0.image_size == SIZE
    assert lite0.fingerprint == "efficientnet_lite0.efficientnet-lite0-57934424.64px"


def test_transform_gives_square_crop_of_image_size(lite0):
    t = lite0.transform(picture(0, size=(200, 50)))
    assert t.shape == (3, SIZE, SIZE) and t.dtype == torch.float32
    # ImageNet normalisation: a mid-grey image is near zero after it
    grey = lite0.transform(Image.new("RGB", (80, 80), (124, 116, 104)))
    assert grey.abs().max() < 0.05


def test_lite0_random_weights_are_seeded_and_not_pretrained(lite0):
    r1 = get_backbone("efficientnet_lite0", weights="none", image_size=SIZE)
    r2 = get_backbone("efficientnet_lite0", weights="NONE", image_size=SIZE)
    w1 = r1.model.net.conv_stem.weight
    torch.testing.assert_close(w1, r2.model.net.conv_stem.weight, rtol=0, atol=0)
    assert not torch.equal(w1, lite0.model.net.conv_stem.weight)
    assert r1.fingerprint == "efficientnet_lite0.random0.64px"


def test_lite0_weights_file_in_either_key_format(lite0, lite0_file, tmp_path):
    timm_file = tmp_path / "lite0_timm.pth"
    torch.save(lite0.model.net.state_dict(), timm_file)
    for path in (lite0_file, timm_file):
        b = get_backbone("efficientnet_lite0", weights=path, image_size=SIZE)
        torch.testing.assert_close(b.model.net.conv_head.weight, lite0.model.net.conv_head.weight)
        assert b.fingerprint.startswith("efficientnet_lite0.file-")


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16"])
def test_torchvision_feature_dims(name):
    spec = BACKBONES[name]
    b = get_backbone(name, weights="none", image_size=None if spec.fixed_size else SIZE)
    f = features(b, [picture(0), picture(1)])
    assert f.shape == (2, spec.dim)
    assert not b.model.training
    assert not any(p.requires_grad for p in b.model.parameters())
    assert b.fingerprint == f"{name}.random0.{b.image_size}px"


def test_vit_takes_only_224():
    with pytest.raises(ValueError, match="224"):
        get_backbone("vit_b_16", weights="none", image_size=SIZE)


def test_too_small_image_size_is_rejected():
    with pytest.raises(ValueError, match="at least 32"):
        get_backbone("resnet18", weights="none", image_size=8)


def test_missing_default_weights_say_how_to_supply_them(no_network):
    with pytest.raises(BackboneUnavailable) as info:
        get_backbone("resnet18")
    message = str(info.value)
    expected = no_network / "checkpoints" / "resnet18-f37072fd.pth"
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "--weights PATH" in message
    assert str(expected) in message
    assert hub_cache_file("resnet18") == expected
    assert isinstance(info.value, ValueError)


def test_default_weights_come_from_the_hub_cache(no_network):
    source = get_backbone("resnet18", weights="none", image_size=SIZE)
    state = {k: v + 1.0 if v.is_floating_point() else v for k, v in source.model.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    cached = hub_cache_file("resnet18")
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    b = get_backbone("resnet18", image_size=SIZE)
    torch.testing.assert_close(b.model.conv1.weight, state["conv1.weight"])
    assert b.fingerprint == "resnet18.IMAGENET1K_V1.64px"


def test_weights_file_path(tmp_path):
    source = get_backbone("resnet18", weights="none", image_size=SIZE)
    state = dict(source.model.state_dict())
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], 0.01)
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": state}, path)
    b = get_backbone("resnet18", weights=str(path), image_size=SIZE)
    assert torch.all(b.model.conv1.weight == 0.01)
    assert b.fingerprint.startswith("resnet18.file-") and b.fingerprint.endswith(".64px")
    other = tmp_path / "other.pth"
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], 0.02)
    torch.save(state, other)
    assert get_backbone("resnet18", weights=other, image_size=SIZE).fingerprint != b.fingerprint


def test_bad_weights_files(tmp_path, lite0_file):
    with pytest.raises(BackboneUnavailable, match="does not exist"):
        get_backbone("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(BackboneUnavailable, match="do not fit resnet18"):
        get_backbone("resnet18", weights=lite0_file, image_size=SIZE)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneUnavailable, match="cannot read weights file"):
        get_backbone("resnet18", weights=junk, image_size=SIZE)
