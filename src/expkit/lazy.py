"""Package namespaces that import their modules on first use (PEP 562).

``expkit.engine.Trainer`` still works, but importing ``expkit.engine.options`` (torch-free,
read by the config schemas before torch is imported) no longer imports the trainer.
"""
from __future__ import annotations

import sys
from typing import Any, Callable


def exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each public name to its module."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = f"{package}.{names[name]}"
        __import__(module)  # the import statement's path (``-X importtime`` sees it), not importlib's
        return getattr(sys.modules[module], name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
