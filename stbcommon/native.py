"""C extensions that setup.py builds as optional: loaded when built, else a Python path answers
and the process says so once (the collector's decoder, the recommender's batch stages)."""

from __future__ import annotations

import importlib
import logging
from typing import Any


def load_optional(name: str) -> tuple[Any, str]:
    """(the extension module, "") when it was built, else (None, why it did not import)."""
    try:
        return importlib.import_module(name), ""
    except ImportError as exc:
        return None, str(exc)


class NotBuiltWarning:
    """Logs once per process that extension `name` is not built, why, and what runs instead."""

    def __init__(self, log: logging.Logger, name: str, why: str, instead: str) -> None:
        self._log = log
        self._text = f"{name} is not built ({why}): {instead}; reinstall with a C compiler (pip install -e .)"
        self.said = False

    def __call__(self) -> None:
        if not self.said:
            self.said = True
            self._log.warning(self._text)
