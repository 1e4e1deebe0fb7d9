"""A name -> object table, one per component kind (datasets, backbones, heads, ...).

Components register themselves with a decorator::

    BACKBONE_REGISTRY = Registry("BACKBONE")

    @BACKBONE_REGISTRY.register()
    def build_resnet_backbone(cfg): ...

and are looked up by the name a config gives (``BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)``).
"""
import difflib
from typing import Any, Callable, Dict, Iterator, Optional, Tuple


class Registry:
    """Maps names to classes or functions of one component kind."""

    def __init__(self, name: str):
        self._name = name
        self._obj_map: Dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map and self._obj_map[name] is not obj:
            raise KeyError(
                f"An object named '{name}' is already registered in the {self._name} registry "
                f"({self._obj_map[name]!r}); choose another name."
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, name: Optional[str] = None) -> Any:
        """Register ``obj`` under ``name`` (default: its ``__name__``).

        Use as ``@REG.register()``, ``@REG.register(name="X")`` or ``REG.register(obj)``.
        """
        if obj is None:
            def decorator(func_or_class: Callable) -> Callable:
                self._do_register(name or func_or_class.__name__, func_or_class)
                return func_or_class
            return decorator
        self._do_register(name or obj.__name__, obj)
        return obj

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``; an unknown name lists the known ones."""
        obj = self._obj_map.get(name)
        if obj is None:
            known = sorted(self._obj_map)
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise KeyError(
                f"No object named '{name}' in the {self._name} registry.{hint} "
                f"Registered names: {', '.join(known) if known else '(none)'}. "
                "A component from a project is registered when its module is imported: "
                "list that module under PLUGINS in the config."
            )
        return obj

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        return iter(self._obj_map.items())

    def names(self):
        return sorted(self._obj_map)

    def __repr__(self) -> str:
        return f"Registry(name={self._name!r}, names={self.names()})"
