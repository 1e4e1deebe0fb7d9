"""Config nodes with ``_BASE_`` inheritance, plugins, and errors that point at the typo.

A config file may start with ``_BASE_: ../Base-AlignedReIDpp.yml`` (a path relative to
the file, or a list of them): the bases are merged first, then the file itself, so the
child wins. ``PLUGINS: [module, ...]`` (in the file or any base) names modules that are
imported before anything is merged; a plugin registers its components and may add
config keys with :func:`register_config_extension`.
"""
import ast
import difflib
import importlib
import os
from typing import Callable, Dict, List

import yaml
from yacs.config import CfgNode as _YacsCfgNode

BASE_KEY = "_BASE_"

_EXTENSIONS: Dict[str, Callable] = {}


def register_config_extension(fn: Callable) -> Callable:
    """Register ``fn(cfg)`` that adds a plugin's keys to a config tree (usable as a decorator).

    Extensions only ever add keys that do not exist yet, so applying them again never
    overwrites a value a user set.
    """
    _EXTENSIONS[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


class ConfigError(KeyError):
    """A config file or override names a key or value that does not fit the tree."""

    def __str__(self):  # KeyError would quote the message; show it as written
        return str(self.args[0]) if self.args else ""


class CfgNode(_YacsCfgNode):
    """A yacs node that knows ``_BASE_``, ``PLUGINS`` and explains unknown keys."""

    def merge_from_file(self, cfg_filename: str) -> "CfgNode":
        """Merge a YAML file and its ``_BASE_`` chain into this config (in place)."""
        chain = _load_chain(os.path.abspath(cfg_filename), stack=[])
        plugins: List[str] = list(self.get("PLUGINS", []))
        for _, data in chain:
            for name in data.get("PLUGINS", []) or []:
                if name not in plugins:
                    plugins.append(name)
        self._use_plugins(plugins, source=cfg_filename)
        for path, data in chain:
            data = {k: v for k, v in data.items() if k not in (BASE_KEY, "PLUGINS")}
            _merge_into(self, data, source=path, prefix="")
        return self

    def merge_from_list(self, cfg_list: List[str]) -> "CfgNode":
        """Merge ``["KEY", value, ...]`` pairs (command-line overrides)."""
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Config overrides must come in KEY VALUE pairs; got an odd number of items: "
                f"{list(cfg_list)}")
        pairs = list(zip(cfg_list[0::2], cfg_list[1::2]))
        for key, value in pairs:
            if key == "PLUGINS":
                value = _decode(value)
                self._use_plugins(list(self.PLUGINS) + [p for p in value if p not in self.PLUGINS],
                                  source="the command line")
        for key, value in pairs:
            if key == "PLUGINS":
                continue
            parts = key.split(".")
            node = self
            for i, part in enumerate(parts[:-1]):
                if part not in node or not isinstance(node[part], CfgNode):
                    raise ConfigError(_unknown_key_message(self, ".".join(parts[:i + 1]),
                                                           "the command line"))
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(_unknown_key_message(self, key, "the command line"))
            node[parts[-1]] = _coerce(_decode(value), node[parts[-1]], key, "the command line")
        return self

    def _use_plugins(self, plugins: List[str], source: str) -> None:
        for name in plugins:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise ConfigError(
                    f"Plugin '{name}' listed under PLUGINS in {source} cannot be imported ({exc}). "
                    "Run from the repository root (or add it to PYTHONPATH) so that the module "
                    "is importable.") from exc
        self._apply_extensions()
        if self.is_frozen():
            return
        self.PLUGINS = list(plugins)

    def _apply_extensions(self) -> None:
        was_frozen = self.is_frozen()
        self.defrost()
        for fn in _EXTENSIONS.values():
            extended = CfgNode(self.clone())
            fn(extended)
            _add_missing(self, extended)
        if was_frozen:
            self.freeze()


def _load_chain(path: str, stack: List[str]):
    """[(file, its dict)] with every base before the file that names it."""
    if path in stack:
        cycle = " -> ".join(stack[stack.index(path):] + [path])
        raise ConfigError(f"_BASE_ cycle in config files: {cycle}")
    if not os.path.isfile(path):
        referrer = f" (named as _BASE_ in {stack[-1]})" if stack else ""
        raise FileNotFoundError(f"Config file not found: {path}{referrer}")
    with open(path, "r", encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys, got {type(data).__name__}")
    chain = []
    bases = data.get(BASE_KEY) or []
    if isinstance(bases, str):
        bases = [bases]
    for base in bases:
        base_path = os.path.expanduser(base)
        if not os.path.isabs(base_path):
            base_path = os.path.join(os.path.dirname(path), base_path)
        chain.extend(_load_chain(os.path.abspath(base_path), stack + [path]))
    chain.append((path, data))
    return chain


def _all_keys(node: _YacsCfgNode, prefix: str = "") -> List[str]:
    keys = []
    for k, v in node.items():
        full = prefix + k
        keys.append(full)
        if isinstance(v, _YacsCfgNode):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _unknown_key_message(root: _YacsCfgNode, full_key: str, source: str) -> str:
    keys = [k for k in _all_keys(root) if not full_key.startswith(k + ".")]
    parent = full_key.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    close = (difflib.get_close_matches(full_key, siblings, n=1, cutoff=0.5)
             or difflib.get_close_matches(full_key, keys, n=1, cutoff=0.6))
    hint = f" The nearest existing key is '{close[0]}'." if close else ""
    return (f"Unknown config key '{full_key}' in {source}.{hint} "
            "Keys added by a project exist only when its module is listed under PLUGINS.")


def _merge_into(node: _YacsCfgNode, data: dict, source: str, prefix: str,
                root: _YacsCfgNode = None) -> None:
    """Merge a file's mapping into ``node``; ``root`` (the whole tree) names nearest keys."""
    root = node if root is None else root
    for key, value in data.items():
        full = prefix + key
        if key not in node:
            raise ConfigError(_unknown_key_message(root, full, source))
        old = node[key]
        if isinstance(old, _YacsCfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"Config key '{full}' in {source} is a group of keys; "
                                  f"got the value {value!r}")
            _merge_into(old, value, source, full + ".", root)
        else:
            node[key] = _coerce(value, old, full, source)


def _decode(value):
    """Turn a command-line string into a Python value where it parses as a literal."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _coerce(value, original, full_key: str, source: str):
    """Check ``value`` against the default's type; allow int->float and list<->tuple."""
    if original is None or value is None:
        return value
    if isinstance(original, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(original, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int) and isinstance(original, float):
            return float(value)
        if isinstance(value, type(original)):
            return value
        if isinstance(original, int) and isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(original, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [value]
    elif isinstance(original, str):
        if isinstance(value, str):
            return value
    elif isinstance(value, type(original)):
        return value
    raise ConfigError(
        f"Config key '{full_key}' in {source} expects a {type(original).__name__} "
        f"(default {original!r}); got {value!r} ({type(value).__name__}).")


def _add_missing(target: _YacsCfgNode, source: _YacsCfgNode) -> None:
    for key, value in source.items():
        if key not in target:
            target[key] = value
        elif isinstance(value, _YacsCfgNode) and isinstance(target[key], _YacsCfgNode):
            _add_missing(target[key], value)
