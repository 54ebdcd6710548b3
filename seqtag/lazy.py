"""How a package hands on its modules' public names without importing them first.

Each package ``__init__`` calls :func:`attach` with the names of its modules (PEP 562), so that
``import seqtag`` and the torch-free modules (``seqtag.serving.onnx_runner``,
``seqtag.data.corpus``, ``seqtag.config``) import where ``import torch`` fails, and a name is
imported from its one home on first use. :class:`MovedModules` keeps the module paths of 0.2.0
importing for one release, with a warning naming the new path. Imports only the standard
library.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType


def attach(package: str, modules: Mapping[str, Sequence[str]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, handing on ``modules``' names.

    Args:
        package: the package's ``__name__``.
        modules: ``{module: names}``; ``module`` is relative to ``package``.

    >>> getattr_, dir_, all_ = attach("seqtag.data", {"corpus": ["Sentence"]})
    >>> getattr_("Sentence").__module__, all_
    ('seqtag.data.corpus', ['Sentence'])
    """
    home = {name: f"{package}.{module}" for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(home))

    return __getattr__, __dir__, sorted(home)


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module that now holds its code, with a ``FutureWarning``.

    ``import seqtag.onnx_tagger`` gives the module object ``seqtag.serving.onnx_runner`` itself
    (one module, two names in ``sys.modules``), so its classes and functions are the same objects.
    An old module whose names now live in several modules (``{old: (new, also, ...)}``) is a
    module of its own that looks each name up in those, in order.

    Args:
        moved: ``{old path: new path or paths}``.
        until: the release that drops the old paths, for the warning.
    """

    def __init__(self, moved: Mapping[str, str | tuple[str, ...]], until: str) -> None:
        self.moved = {old: (new,) if isinstance(new, str) else tuple(new) for old, new in moved.items()}
        self.until = until

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.moved:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = self.moved[spec.name]
        warnings.warn(
            f"{spec.name} is now {' and '.join(new)}; the old path goes in seqtag {self.until}",
            FutureWarning,
            stacklevel=2,
        )
        if len(new) > 1:
            module = ModuleType(spec.name, f"Names of the former {spec.name}, now in {', '.join(new)}.")
            module.__getattr__ = _first_of(spec.name, new)  # type: ignore[attr-defined]
            return module
        module = importlib.import_module(new[0])
        spec.loader_state = module.__spec__  # the import system sets module.__spec__ = spec ...
        return module

    def exec_module(self, module: ModuleType) -> None:
        if module.__spec__.loader_state is not None:
            module.__spec__ = module.__spec__.loader_state  # ... and this puts the module's own back


def _first_of(old: str, modules: Sequence[str]) -> Callable:
    def __getattr__(name: str):
        for module in modules:
            value = getattr(importlib.import_module(module), name, _MISSING)
            if value is not _MISSING:
                return value
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__


_MISSING = object()
