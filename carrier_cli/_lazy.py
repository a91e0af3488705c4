"""Package attributes that import their module on first use (PEP 562).

`carrier --help` must stay under 150 ms, and `import carrier_cli.memory.types` runs
`carrier_cli/memory/__init__.py` first: a package that re-exported `MemoryStore` eagerly
would pull SQLAlchemy and NumPy into every command (about 250 ms). So the public names
are resolved by `__getattr__` the first time they are read, then cached in the package's
namespace, and `dir()` still lists them. Type checkers read the `TYPE_CHECKING` imports
that sit beside each use of this helper.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, exporting `name -> "module.path"`."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
