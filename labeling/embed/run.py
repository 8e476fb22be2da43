"""Turn image files into feature vectors, batched and resumable.

- :func:`embed_paths` runs a :class:`~labeling.embed.backbones.LoadedBackbone` over files,
  ``channels_last``, ``torch.inference_mode`` and bf16 autocast on CUDA. On CPU the images are
  decoded by threads of this process while the model runs (worker processes would compete
  with torch's own threads for the same cores), and freed memory stays in the heap while the
  model runs (:data:`steady_heap`); on a GPU, DataLoader worker processes decode.
  For torchvision's classification presets the per-image work stops at the resized, cropped
  8-bit pixels: scaling and normalising are done once per batch, straight into
  ``channels_last``, with the same arithmetic. Unreadable files never stop a run: they come
  back with ``ok=False``.
- :func:`embed_project_items` embeds only the items a :class:`~storage.vectors.VectorStore`
  lacks and writes every batch as it is done, so an interrupted run resumes where it stopped.

Vectors made elsewhere (``.npy`` + ids, or Parquet) are read by
:func:`labeling.embed.precomputed.load_precomputed`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Union

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF
from torchvision.transforms._presets import ImageClassification

from labeling.device import pick_device
from labeling.embed.backbones import LoadedBackbone
from storage.vectors import VectorStore

LOG = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int], None]]
BatchCallback = Callable[[np.ndarray, np.ndarray, np.ndarray], None]

MAX_WORKERS = 4
"""Decoding worker processes at most (GPU runs): beyond four, image decoding outpaces a small
backbone and only adds start-up time and memory."""
SMALL_JOB = 256
"""Below this many images no worker processes are started: starting them (about a second each
with torch imported) costs more than they save."""
PREFETCH_BATCHES = 2
"""Batches decoded (or being decoded) ahead of the model."""
MAX_DECODE_THREADS = 8
"""Threads decoding batches on CPU runs at most; by default half the cores, at least two. PIL
releases the GIL while it decodes and resizes, so on two cores two threads embed 640x480 JPEGs
about 25% faster than one; small images are mostly Python and gain little from more."""


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_HEAP_KEPT = (1 << 30, (1 << 31) - 1)
"""mmap and trim thresholds while a CPU model runs: blocks up to 1 GiB come from the heap, and
the heap keeps up to 2 GiB of freed memory."""
_HEAP_AFTER = (32 << 20, 64 << 20)
"""The thresholds afterwards: where glibc's own adjustment ends up (its largest values)."""


class _SteadyHeap:
    """Keeps freed memory in glibc's heap while a CPU model runs (nestable, process-wide).

    Every forward pass allocates its activations afresh; a batch's larger tensors (tens of MB)
    are above glibc's mmap threshold, so each is mapped, touched page by page (a page fault per
    4 KiB, zero-filled by the kernel) and unmapped again. On two cores that is about 40% of the
    model's CPU time, and whether a process pays it depends on its allocation history (measured
    on 2 cores: the same loop at 1.2 or 2.4 ms per image at 112 px). Inside this context the heap serves and keeps those
    blocks, so batches after the first reuse memory; on leaving, the thresholds go back to where
    glibc's own adjustment ends up and free memory is returned (``malloc_trim``). A no-op where
    the C library is not glibc.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._libc: Any = None
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt"):
                self._libc = libc
        except (OSError, TypeError):  # Windows, or no C library to load
            pass

    def _set(self, mmap_threshold: int, trim_threshold: int) -> None:
        self._libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        self._libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)

    def __enter__(self) -> "_SteadyHeap":
        if self._libc is not None:
            with self._lock:
                if self._depth == 0:
                    self._set(*_HEAP_KEPT)
                self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        if self._libc is not None:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._set(*_HEAP_AFTER)
                    self._libc.malloc_trim(0)


steady_heap = _SteadyHeap()
"""Context manager around a CPU inference loop: see :class:`_SteadyHeap`. :func:`embed_paths` uses
it on CPU; a benchmark's bare forward loop should use it too, to compare like with like."""


def _default_loader(path: PathLike) -> Image.Image:
    from labeling.data.images import load_rgb

    return load_rgb(path)


class EmbedDataset(Dataset):
    """Images by position, preprocessed for a backbone; unreadable files do not raise.

    Parameters
    ----------
    paths : sequence of path
        Image files.
    transform : callable
        PIL RGB image -> float tensor ``(3, S, S)``.
    loader : callable, optional
        path -> PIL RGB image; raises ``ValueError`` (e.g. ``labeling.data.images.ImageError``) or
        ``OSError`` for unusable files. Default: :func:`labeling.data.images.load_rgb`.

    Notes
    -----
    Item ``i`` is ``(i, tensor, ok)``. For a file that cannot be read or decoded, ``tensor`` is
    all zeros and ``ok`` is False, so one bad file never fails a batch.
    """

    def __init__(self, paths: Sequence[PathLike], transform: Callable[[Image.Image], torch.Tensor], *,
                 loader: Callable[[PathLike], Image.Image] | None = None) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.loader = loader if loader is not None else _default_loader
        self._blank: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _zeros(self) -> torch.Tensor:
        if self._blank is None:  # the transform fixes the output shape whatever the input size
            self._blank = torch.zeros_like(self.transform(Image.new("RGB", (64, 64))))
        return self._blank

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, bool]:
        path = self.paths[index]
        try:
            image = self.loader(path)
        except (ValueError, OSError, Image.DecompressionBombError) as exc:
            reason = str(exc)
            LOG.warning("skipping unreadable image: %s", reason if str(path) in reason else f"{path}: {reason}")
            return index, self._zeros(), False
        return index, self.transform(image), True


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _auto_workers(n_items: int, device: torch.device | None = None) -> int:
    """Worker processes for a run: none on CPU, where the model already keeps every core busy
    and a worker process only takes cores from it; up to :data:`MAX_WORKERS` for a GPU."""
    if n_items < SMALL_JOB or (device is not None and device.type == "cpu"):
        return 0
    return max(0, min(MAX_WORKERS, _cpu_count() - 1))


class _Preprocess:
    """A backbone transform split into per-image and per-batch work.

    For torchvision's :class:`ImageClassification` preset on RGB and grey images, the per-image
    part is the PIL resize and centre crop, giving 8-bit pixels; :meth:`batch` then scales and
    normalises the whole batch at once, as the preset does per image (``x / 255``, then
    ``(x - mean) / std`` in float32), laid out ``channels_last``: the same numbers. Any other
    transform, or image mode, runs the whole transform per image.
    """

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform
        self.preset = transform if type(transform) is ImageClassification else None
        if self.preset is not None:
            self.mean = torch.as_tensor(self.preset.mean, dtype=torch.float32).view(1, -1, 1, 1)
            self.std = torch.as_tensor(self.preset.std, dtype=torch.float32).view(1, -1, 1, 1)
        self._blank: torch.Tensor | None = None

    def image(self, im: Image.Image) -> np.ndarray | torch.Tensor:
        """RGB pixels ``(S, S, 3)`` or grey ones ``(S, S)`` (an ``L`` image stands for its RGB
        conversion, the grey value in every channel), or the whole transform's output."""
        t = self.preset
        if t is not None and im.mode in ("RGB", "L"):
            mode = im.mode
            im = TF.resize(im, t.resize_size, interpolation=t.interpolation, antialias=t.antialias)
            im = TF.center_crop(im, t.crop_size)
            if im.mode == mode:
                return np.asarray(im)
        return self.transform(im if im.mode != "L" else im.convert("RGB"))

    def blank(self) -> torch.Tensor:
        if self._blank is None:  # the transform fixes the output shape whatever the input size
            self._blank = torch.zeros_like(self.transform(Image.new("RGB", (64, 64))))
        return self._blank

    def stack_pixels(self, items: list[np.ndarray | torch.Tensor | None]) -> np.ndarray | None:
        """The 8-bit pixels of a batch as one ``(B, S, S, 3)`` array (numpy only: safe off the main thread)."""
        arrays = [x for x in items if isinstance(x, np.ndarray)]
        if not arrays:
            return None
        shape = arrays[0].shape[:2] + (3,)
        return np.stack([np.broadcast_to(x[..., None] if x.ndim == 2 else x, shape) if isinstance(x, np.ndarray)
                         else np.zeros(shape, np.uint8) for x in items])

    def batch(self, items: list[np.ndarray | torch.Tensor | None], pixels: np.ndarray | None) -> torch.Tensor:
        """``(B, 3, S, S)`` float32 input; zeros for the failed items (None)."""
        if pixels is None:
            return torch.stack([self.blank() if x is None else x for x in items])
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()  # channels_last, no copy of the layout
        x = x.div_(255.0).sub_(self.mean).div_(self.std)
        for i, item in enumerate(items):
            if item is None:
                x[i] = 0.0
            elif not isinstance(item, np.ndarray):
                x[i] = item
        return x


def _decode(paths: Sequence[PathLike], rows: range, prep: _Preprocess,
            loader: Callable[[PathLike], Image.Image]) -> tuple[list, np.ndarray | None]:
    items: list[np.ndarray | torch.Tensor | None] = []
    for i in rows:
        path = paths[i]
        try:
            image = loader(path)
        except (ValueError, OSError, Image.DecompressionBombError) as exc:
            reason = str(exc)
            LOG.warning("skipping unreadable image: %s", reason if str(path) in reason else f"{path}: {reason}")
            items.append(None)
            continue
        items.append(prep.image(image))
    return items, prep.stack_pixels(items)


def _in_process_batches(paths: Sequence[PathLike], transform: Callable[[Image.Image], torch.Tensor],
                        batch_size: int, loader: Callable[[PathLike], Image.Image] | None, *,
                        thread: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(rows, images, ok)`` batches decoded in this process: by a few threads (see
    :data:`MAX_DECODE_THREADS`) up to :data:`PREFETCH_BATCHES` batches ahead of the caller
    (``thread``), or in line. Torch work (the batch's scaling) stays on the calling thread, so
    the decoding threads never start pools of torch threads of their own."""
    prep = _Preprocess(transform)
    if loader is not None:
        load = loader
    elif prep.preset is not None:  # grey images stay grey until resized: a third of the resizing
        from labeling.data.images import load_rgb_or_grey as load
    else:
        load = _default_loader
    spans = [range(s, min(s + batch_size, len(paths))) for s in range(0, len(paths), batch_size)]

    def assemble(rows: range, decoded: tuple[list, np.ndarray | None]):
        items, pixels = decoded
        good = torch.tensor([x is not None for x in items], dtype=torch.bool)
        return torch.arange(rows.start, rows.stop, dtype=torch.int64), prep.batch(items, pixels), good

    if not thread or len(spans) < 2:
        for rows in spans:
            yield assemble(rows, _decode(paths, rows, prep, load))
        return
    threads = max(2, min(MAX_DECODE_THREADS, _cpu_count() // 2))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="embed-decode") as pool:
        ahead = [pool.submit(_decode, paths, rows, prep, load) for rows in spans[:PREFETCH_BATCHES]]
        try:
            for k, rows in enumerate(spans):
                decoded = ahead[k].result()
                if k + PREFETCH_BATCHES < len(spans):
                    ahead.append(pool.submit(_decode, paths, spans[k + PREFETCH_BATCHES], prep, load))
                yield assemble(rows, decoded)
        finally:  # a run that ends early: drop what is not started yet
            for f in ahead:
                f.cancel()


def embed_paths(
    paths: Sequence[PathLike],
    backbone: LoadedBackbone,
    *,
    device: Union[str, torch.device] = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: Progress = True,
    on_batch: BatchCallback | None = None,
    loader: Callable[[PathLike], Image.Image] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Embed image files with a backbone.

    Parameters
    ----------
    paths : sequence of path, length N
        Image files.
    backbone : LoadedBackbone
        Its model is moved to ``device`` (in place) and switched to eval mode.
    device : str or torch.device, default "auto"
        See :func:`labeling.device.pick_device`. On CUDA: pinned memory and bf16 autocast.
    batch_size : int, default 64
    num_workers : int, optional
        DataLoader worker processes. By default none on CPU (threads of this process decode
        ahead of the model), and on a GPU ``min(4, cpus - 1)``, none for fewer than
        :data:`SMALL_JOB` images. ``0``: decode in this process.
    progress : bool or callable, default True
        True shows a tqdm bar; a callable gets ``(done, total)`` after each batch.
    on_batch : callable, optional
        ``on_batch(rows, vectors, ok)`` after each batch: ``rows`` int64 ``(B,)`` positions in
        ``paths``, ``vectors`` float32 ``(B, dim)``, ``ok`` bool ``(B,)``. An exception it raises
        stops the run (and propagates).
    loader : callable, optional
        path -> PIL RGB image; default :func:`labeling.data.images.load_rgb`.

    Returns
    -------
    vectors : ndarray of float32, shape (N, dim)
        Feature vectors; all zeros where ``ok`` is False.
    ok : ndarray of bool, shape (N,)
        False for files that could not be read or gave non-finite features.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dev = pick_device(device)
    n = len(paths)
    vectors = np.zeros((n, backbone.dim), np.float32)
    ok = np.zeros(n, bool)
    if n == 0:
        return vectors, ok
    workers = _auto_workers(n, dev) if num_workers is None else int(num_workers)
    cuda = dev.type == "cuda"
    if workers > 0:
        data = DataLoader(
            EmbedDataset(paths, backbone.transform, loader=loader), batch_size=batch_size, shuffle=False,
            num_workers=workers, pin_memory=cuda, persistent_workers=False,
        )
    else:
        data = _in_process_batches(paths, backbone.transform, batch_size, loader, thread=True)
    model = backbone.model.eval().to(dev, memory_format=torch.channels_last)
    LOG.info("embedding %d images with %s on %s (batch %d, %d workers)", n, backbone.fingerprint, dev,
             batch_size, workers)
    report = _progress(progress, n, backbone.name)
    done = 0
    try:
        with torch.inference_mode(), (steady_heap if dev.type == "cpu" else contextlib.nullcontext()):
            for rows, images, good in data:
                x = images.to(dev, non_blocking=cuda).contiguous(memory_format=torch.channels_last)
                with (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()):
                    feats = model(x)
                if feats.ndim != 2 or feats.shape[1] != backbone.dim:
                    raise ValueError(f"{backbone.name} returned features of shape {tuple(feats.shape)}, "
                                     f"expected (B, {backbone.dim})")
                out = feats.float().cpu().numpy()
                rows_np = rows.numpy().astype(np.int64)
                good_np = good.numpy().astype(bool)
                finite = np.isfinite(out).all(axis=1)
                if (good_np & ~finite).any():
                    LOG.warning("%d images gave non-finite features; marked as failed",
                                int((good_np & ~finite).sum()))
                good_np &= finite
                out[~good_np] = 0.0
                vectors[rows_np] = out
                ok[rows_np] = good_np
                if on_batch is not None:
                    on_batch(rows_np, out, good_np)
                done += len(rows_np)
                report(done, len(rows_np))
    finally:
        report.close()
        if workers == 0:
            data.close()  # stops the decoding threads when the run ends early
    failed = int((~ok).sum())
    if failed:
        LOG.warning("%d of %d images could not be embedded", failed, n)
    return vectors, ok


class _Reporter:
    def __init__(self, callback: Callable[[int, int], None] | None, bar: Any, total: int) -> None:
        self.callback, self.bar, self.total = callback, bar, total

    def __call__(self, done: int, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step)
        if self.callback is not None:
            self.callback(done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(progress: Progress, total: int, name: str) -> _Reporter:
    if callable(progress):
        return _Reporter(progress, None, total)
    if progress:
        from tqdm.auto import tqdm

        return _Reporter(None, tqdm(total=total, unit="img", desc=f"embed {name}"), total)
    return _Reporter(None, None, total)


def embed_project_items(
    store: VectorStore,
    item_ids: npt.ArrayLike,
    paths: Sequence[PathLike],
    backbone: LoadedBackbone,
    *,
    device: Union[str, torch.device] = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: Progress = True,
    loader: Callable[[PathLike], Image.Image] | None = None,
) -> dict[str, Any]:
    """Embed the items that ``store`` has no vector for yet; resumable.

    Each finished batch is added to the store at once, so an interrupted run loses at most one
    batch and the next run embeds only what is still missing.

    Parameters
    ----------
    store : VectorStore
        Must have ``key == backbone.fingerprint`` and ``dim == backbone.dim``.
    item_ids : array-like of int, shape (N,)
        Unique item ids, aligned with ``paths``.
    paths : sequence of path, length N
    backbone : LoadedBackbone
    device, batch_size, num_workers, progress, loader
        As in :func:`embed_paths`.

    Returns
    -------
    dict
        ``total`` (N), ``already`` (had a vector), ``embedded`` (added now), ``failed``
        (unreadable now) and ``failed_ids`` (their item ids, a list of int).

    Raises
    ------
    ValueError
        Mismatched lengths, duplicate ids, or a store of another backbone.
    """
    ids = np.asarray(item_ids)
    if ids.ndim != 1 or len(ids) != len(paths):
        raise ValueError(f"item_ids must be 1-D and as long as paths ({len(paths)}), got shape {ids.shape}")
    if len(ids) and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"item ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int64, copy=False)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("item_ids contains duplicates")
    if store.key != backbone.fingerprint or store.dim != backbone.dim:
        raise ValueError(f"store {store.key} ({store.dim}-d) does not belong to backbone "
                         f"{backbone.fingerprint} ({backbone.dim}-d)")
    todo = np.flatnonzero(~store.has(ids)) if len(ids) else np.zeros(0, np.int64)
    todo_ids = ids[todo]
    LOG.info("%d of %d items already embedded with %s; %d to go", len(ids) - len(todo), len(ids),
             backbone.fingerprint, len(todo))

    def write(rows: np.ndarray, vecs: np.ndarray, good: np.ndarray) -> None:
        if good.any():
            store.add(todo_ids[rows[good]], vecs[good])

    _, ok = embed_paths([paths[i] for i in todo], backbone, device=device, batch_size=batch_size,
                        num_workers=num_workers, progress=progress, on_batch=write, loader=loader)
    if len(todo):
        store.compact()
    failed_ids = todo_ids[~ok]
    return {"total": int(len(ids)), "already": int(len(ids) - len(todo)), "embedded": int(ok.sum()),
            "failed": int(len(failed_ids)), "failed_ids": [int(i) for i in failed_ids]}
