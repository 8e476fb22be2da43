"""Choosing the torch device that embedding, training and search run on.

:func:`pick_device` turns a user's ``--device`` choice (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or
``mps``) into a :class:`torch.device`; :class:`DeviceUnavailableError` is the one error raised, by
it and by the neighbour index, when a device is asked for that this machine does not have.
"""
from __future__ import annotations

from typing import Union

import torch

__all__ = ["DeviceUnavailableError", "pick_device"]


class DeviceUnavailableError(ValueError, RuntimeError):
    """The requested torch device is not present on this machine.

    A ``ValueError`` (a bad ``--device`` choice, reported as such by the CLI and the pages) and a
    ``RuntimeError`` (what the neighbour index raised for it before).
    """


def pick_device(preference: Union[str, torch.device] = "auto") -> torch.device:
    """The torch device to embed, train and search on.

    Parameters
    ----------
    preference : str or torch.device, default "auto"
        ``"auto"``: CUDA when available, else CPU. ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"`` ask for that device (any case, surrounding spaces ignored).

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceUnavailableError
        The device was asked for but is not available.
    ValueError
        ``preference`` is not a device name.
    """
    pref = preference
    if isinstance(pref, str) and pref.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(pref.strip().lower() if isinstance(pref, str) else pref)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {pref!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {pref!r} asked for, but CUDA is not available here (no GPU, or torch "
                f"was built without CUDA); use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {pref!r} asked for, but only {torch.cuda.device_count()} "
                                         f"CUDA device(s) are present")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device {pref!r} asked for, but MPS is not available here; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {pref!r}; use auto, cpu, cuda, cuda:N or mps")
    return device
