"""Optional dependencies: import one, or say in one line which package and extra it needs."""
from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, purpose: str, package: str | None = None, extra: str = "train") -> ModuleType:
    """``import module``; a ``ValueError`` naming ``package`` and ``pip install 'llmcodec[extra]'``
    when it is missing (``purpose``: what needs it, e.g. "speaker similarity")."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"{purpose} needs {package or module} (pip install 'llmcodec[{extra}]'): {e}") from None
