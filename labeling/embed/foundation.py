"""The backbones of the field: DINOv2 (self-supervised ViTs, through ``timm``) and CLIP (image and text
towers, through ``open_clip``, the optional extra ``quorum[clip]``).

Weights never download here. Each backbone loads, in this order, from a file given as ``--weights FILE``
(``weights=PATH``), or from the caches a connected machine fills: the Hugging Face hub cache
(``timm``/``open_clip`` downloads) and, for DINOv2, the torch hub cache (``torch.hub.load`` of
``facebookresearch/dinov2``). Without either, the error names the file and both places to put it.
``weights="none"`` builds seeded random weights (tests).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from labeling.embed.backbones import (RANDOM_INIT_SEED, BackboneUnavailable, _Built, _classification_transform,
                                      _file_tag, _load_state_dict_file, _load_strict, _seeded_init, _TimmFeatures)


@dataclass(frozen=True)
class Dinov2:
    arch: str  # timm architecture
    hf_repo: str  # the Hugging Face repository timm downloads from
    hub_file: str  # torch hub's file of the original release


DINOV2 = {
    "dinov2_vits14": Dinov2("vit_small_patch14_dinov2", "timm/vit_small_patch14_dinov2.lvd142m",
                            "dinov2_vits14_pretrain.pth"),
    "dinov2_vitb14": Dinov2("vit_base_patch14_dinov2", "timm/vit_base_patch14_dinov2.lvd142m",
                            "dinov2_vitb14_pretrain.pth"),
}


@dataclass(frozen=True)
class Clip:
    arch: str  # open_clip model name
    tag: str  # open_clip pretrained tag


CLIP = {
    "clip_vitb32": Clip("ViT-B-32", "openai"),
    "clip_vitb16": Clip("ViT-B-16", "openai"),
    "clip_vitb32_laion": Clip("ViT-B-32", "laion2b_s34b_b79k"),
    "clip_mobileclip_s2": Clip("MobileCLIP-S2", "datacompdr"),
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HF_FILES = ("model.safetensors", "open_clip_model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")


def hf_cached(repo: str, names: tuple[str, ...] = HF_FILES) -> Path | None:
    """A weights file of ``repo`` already in the Hugging Face hub cache (never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in names:
        got = try_to_load_from_cache(repo_id=repo, filename=name)
        if isinstance(got, str) and Path(got).is_file():
            return Path(got)
    return None


def _hf_cache_dir(repo: str) -> Path:
    """Where the Hugging Face hub cache keeps ``repo`` (for the message that says where to put a file)."""
    root = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
                / "hub")
    return root / f"models--{repo.replace('/', '--')}"


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise BackboneUnavailable(f"reading {path} needs the 'safetensors' package") from exc
        try:
            return load_file(str(path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise BackboneUnavailable(f"cannot read weights file {path}: {exc}") from exc
    return _load_state_dict_file(path)


# --------------------------------------------------------------------------- DINOv2

def dinov2_builder(name: str) -> Callable[[Union[str, Path], int], _Built]:
    spec = DINOV2[name]

    def build(weights: Union[str, Path], size: int) -> _Built:
        import timm
        from timm.models.vision_transformer import checkpoint_filter_fn

        # dynamic_img_size: the position embedding (trained at 518 px) is interpolated to the input's grid
        net = _seeded_init(lambda: timm.create_model(spec.arch, pretrained=False, num_classes=0,
                                                     dynamic_img_size=True))
        if weights == "none":
            tag = f"random{RANDOM_INIT_SEED}"
        else:
            path = _dinov2_file(name) if weights == "default" else Path(weights)
            state = checkpoint_filter_fn(_read_state(path), net)  # the original release's names -> timm's
            _load_strict(net, state, name=name, source=str(path))
            tag = "lvd142m" if weights == "default" else _file_tag(path)
        transform = _classification_transform(size, interpolation=InterpolationMode.BICUBIC)
        return _Built(_TimmFeatures(net), transform, tag)

    return build


def _dinov2_file(name: str) -> Path:
    spec = DINOV2[name]
    found = hf_cached(spec.hf_repo, ("model.safetensors", "pytorch_model.bin"))
    if found is not None:
        return found
    hub = Path(torch.hub.get_dir()) / "checkpoints" / spec.hub_file
    if hub.is_file():
        return hub
    raise BackboneUnavailable(
        f"{name} weights are not on this machine and cannot be downloaded here. On a machine with internet, "
        f"download https://huggingface.co/{spec.hf_repo}/resolve/main/model.safetensors (or "
        f"https://dl.fbaipublicfiles.com/dinov2/{name}/{spec.hub_file}), then pass --weights PATH "
        f"(weights=PATH), or copy {spec.hub_file} to {hub}")


# --------------------------------------------------------------------------- CLIP

def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise BackboneUnavailable("CLIP backbones need open_clip: pip install 'quorum[clip]' "
                                  "(or pip install open-clip-torch)") from exc
    return open_clip


class ClipImage(nn.Module):
    """The image tower of a CLIP model: ``(B, 3, S, S)`` -> ``(B, D)`` image embeddings."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


class _NoRandomWarning(logging.Filter):
    """open_clip warns that a model built without its pretrained tag is random; here the weights load next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def _create(open_clip, arch: str, quick: bool) -> nn.Module:
    quiet = _NoRandomWarning()
    logging.getLogger().addFilter(quiet)
    try:
        return _seeded_init(lambda: open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick))
    finally:
        logging.getLogger().removeFilter(quiet)


def _clip_model(name: str, weights: Union[str, Path], *, arch: str | None = None) -> tuple[nn.Module, str]:
    """The whole CLIP model (both towers) and the weights' tag; ``arch`` overrides the registry's (tests)."""
    open_clip = _open_clip()
    spec = CLIP[name]
    arch = arch or spec.arch
    quick = bool(open_clip.pretrained.get_pretrained_cfg(spec.arch, spec.tag).get("quick_gelu", False))
    if weights == "none":
        return _create(open_clip, arch, quick).eval(), f"random{RANDOM_INIT_SEED}"
    path = _clip_file(name) if weights == "default" else Path(weights)
    model = _create(open_clip, arch, quick)
    state = _read_state(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    _load_strict(model, state, name=name, source=str(path))
    return model.eval(), (spec.tag if weights == "default" else _file_tag(path))


def _clip_file(name: str) -> Path:
    open_clip = _open_clip()
    spec = CLIP[name]
    repo = open_clip.pretrained.get_pretrained_cfg(spec.arch, spec.tag).get("hf_hub", "").strip("/")
    found = hf_cached(repo) if repo else None
    if found is not None:
        return found
    raise BackboneUnavailable(
        f"{name} weights are not on this machine and cannot be downloaded here. On a machine with internet, "
        f"download https://huggingface.co/{repo}/resolve/main/open_clip_model.safetensors (or "
        f"open_clip_pytorch_model.bin), then pass --weights PATH (weights=PATH), or let open_clip fill the "
        f"Hugging Face cache ({_hf_cache_dir(repo)}) on a connected machine and copy that folder here")


def clip_builder(name: str) -> Callable[[Union[str, Path], int], _Built]:
    def build(weights: Union[str, Path], size: int) -> _Built:
        model, tag = _clip_model(name, weights)
        spec = CLIP[name]
        cfg = _open_clip().pretrained.get_pretrained_cfg(spec.arch, spec.tag)  # the weights' own preprocessing
        mode = InterpolationMode.BILINEAR if cfg.get("interpolation") == "bilinear" else InterpolationMode.BICUBIC
        transform = _classification_transform(size, interpolation=mode, crop_fraction=1.0,
                                              mean=tuple(cfg.get("mean", CLIP_MEAN)), std=tuple(cfg.get("std", CLIP_STD)))
        return _Built(ClipImage(model), transform, tag)

    return build


class TextTower:
    """A CLIP model's text side: class prompts and search queries as unit vectors in the image space."""

    def __init__(self, model: nn.Module, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), D) float32, each row of unit length."""
        tokens = self.tokenizer(list(texts))
        out = self.model.encode_text(tokens).float()
        out = out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return out.numpy().astype(np.float32)

    @property
    def logit_scale(self) -> float:
        """The model's own temperature (CLIP's ``exp(logit_scale)``, about 100 for trained weights)."""
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.detach().exp()) if scale is not None else 100.0


def text_tower(name: str, weights: Union[str, Path, None], *, arch: str | None = None) -> TextTower:
    """The text tower of CLIP backbone ``name`` with the same weights its image vectors came from."""
    model, _tag = _clip_model(name, "default" if weights is None else weights, arch=arch)
    return TextTower(model, _open_clip().get_tokenizer(arch or CLIP[name].arch))
