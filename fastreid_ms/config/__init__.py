from .config import CfgNode, ConfigError, register_config_extension
from .defaults import _C


def get_cfg() -> CfgNode:
    """A fresh copy of the default config, with the keys of every imported plugin."""
    cfg = _C.clone()
    cfg._apply_extensions()
    return cfg


__all__ = ["CfgNode", "ConfigError", "get_cfg", "register_config_extension"]
