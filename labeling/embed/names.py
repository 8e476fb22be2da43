"""Facts about a backbone that follow from its name alone, importable without torch (the server's
pages ask them; ``labeling.embed.backbones`` builds the models)."""
from __future__ import annotations


def is_clip(name: str | None) -> bool:
    """Whether backbone ``name`` has a text tower (zero-shot suggestions, text search)."""
    return bool(name) and str(name).startswith("clip_")
