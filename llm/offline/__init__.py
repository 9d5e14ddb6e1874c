"""Working without an LLM: the AST transform, execution traces and narrated answers.

Import the pieces from their modules (``llm.offline.transform``, ``llm.offline.trace``,
``llm.offline.answers``); this package file stays light.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

# Transitional: a sibling module ``llm/offline.py`` (owned outside this package) defines the
# generic ``OfflineProvider`` that ``llm/__init__.py`` imports as ``from llm.offline import
# OfflineProvider``. This package shadows that file, so its name is forwarded from here until
# the two are reconciled; nothing else in this package depends on it.
_SIBLING = Path(__file__).resolve().parent.parent / "offline.py"


def __getattr__(name: str) -> Any:
    if name != "OfflineProvider" or not _SIBLING.is_file():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = sys.modules.get("llm._offline_module")
    if module is None:
        spec = importlib.util.spec_from_file_location("llm._offline_module", _SIBLING)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module.OfflineProvider
