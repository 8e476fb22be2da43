"""Embedding throughput of each backbone family: ``python -m bench --only backbones``.

Each backbone embeds the same demo images through the app's own path (``embed_paths``: decode,
preprocess, model, on CUDA with bf16 autocast), against a bare forward loop of the same model over
pre-decoded tensors in the same run. Weights are random where the real ones are not on the machine:
throughput does not depend on their values (the figure says which were used).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from bench.suite import row

FAMILIES = ("efficientnet_lite0", "dinov2_vits14", "dinov2_vitb14", "clip_vitb32", "clip_vitb16", "clip_mobileclip_s2")


def _loaded(name: str):
    from labeling.embed.backbones import BackboneUnavailable, get_backbone

    try:
        return get_backbone(name), "pretrained"
    except BackboneUnavailable:
        return get_backbone(name, weights="none"), "random weights"


def backbone_rows(work: Path, n_images: int, *, device: str = "cpu", names=FAMILIES) -> list[dict]:
    import torch

    from labeling.data.demo import write_images
    from labeling.data.images import load_rgb
    from labeling.device import pick_device
    from labeling.embed.run import embed_paths

    written = write_images(work / "backbone-images", limit=n_images)
    paths = [p for p, _ in written]
    dev = pick_device(device)
    cuda = dev.type == "cuda"
    rows = []
    for name in names:
        try:
            bb, weights = _loaded(name)
        except Exception as exc:  # noqa: BLE001 - a family whose package is missing is reported, not fatal
            rows.append(row("backbone throughput", f"{name}", None, "img/s", "bare forward loop", None,
                            note=f"not measured: {exc}"))
            continue
        t0 = time.perf_counter()
        embed_paths(paths, bb, device=device, progress=False)
        ours = len(paths) / (time.perf_counter() - t0)
        batch = torch.stack([bb.transform(load_rgb(p)) for p in paths])
        model = bb.model.eval().to(dev)
        with torch.inference_mode():
            model(batch[:4].to(dev))  # warm-up
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for s in range(0, len(batch), 64):
                with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
                    model(batch[s:s + 64].to(dev)).float().cpu()
            bare = len(paths) / (time.perf_counter() - t0)
        rows.append(row("backbone throughput", f"{name} at {bb.image_size} px, {bb.dim}-d, "
                        f"{'CUDA bf16' if cuda else 'CPU'}, {weights}", ours, "img/s",
                        "bare forward loop, pre-decoded tensors", bare, ratio=ours / bare,
                        ratio_means="of the bare loop", note=f"{len(paths)} demo images"))
    return rows
