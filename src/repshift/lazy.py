"""Modules imported on first use: a step loads only the modules it runs (the config check reads the catalog without
torch or scikit-learn, a metrics job loads no transformers)."""

import importlib
from collections.abc import Callable


class Deferred:
    """A repshift module whose functions import it on first call."""

    def __init__(self, module: str):
        self.module = module

    def __getattr__(self, name: str) -> Callable:
        def call(*args, **kwargs):
            return getattr(importlib.import_module(f"repshift.{self.module}"), name)(*args, **kwargs)

        call.__qualname__ = f"{self.module}.{name}"
        return call
