"""Config tree: _BASE_ chains, overrides, typo errors, plugin keys, config.yaml round trip."""
import os
import sys
import textwrap

import pytest
import yaml

from fastreid_ms.config import ConfigError, get_cfg


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))
    return str(path)


def test_base_chain_child_wins_and_relative_paths(tmp_path):
    write(tmp_path / "a" / "grand.yml", """
        SOLVER:
          BASE_LR: 0.5
          MAX_EPOCH: 7
        MODEL:
          BACKBONE:
            DEPTH: 34
    """)
    write(tmp_path / "a" / "b" / "parent.yml", """
        _BASE_: ../grand.yml
        SOLVER:
          MAX_EPOCH: 9
        INPUT:
          SIZE_TRAIN: [64, 32]
    """)
    child = write(tmp_path / "c" / "child.yml", """
        _BASE_: ../a/b/parent.yml
        SOLVER:
          BASE_LR: 0.01
    """)
    cfg = get_cfg()
    cfg.merge_from_file(child)
    assert cfg.SOLVER.BASE_LR == 0.01          # child wins
    assert cfg.SOLVER.MAX_EPOCH == 9           # parent over grandparent
    assert cfg.MODEL.BACKBONE.DEPTH == 34      # grandparent kept
    assert cfg.INPUT.SIZE_TRAIN == [64, 32]
    assert cfg.SOLVER.MOMENTUM == get_cfg().SOLVER.MOMENTUM  # untouched default (deep merge)


def test_base_list_and_cycle(tmp_path):
    a = write(tmp_path / "a.yml", "_BASE_: b.yml\n")
    write(tmp_path / "b.yml", "_BASE_: a.yml\n")
    with pytest.raises(ConfigError, match="cycle"):
        get_cfg().merge_from_file(a)
    write(tmp_path / "x.yml", "SOLVER:\n  BASE_LR: 0.2\n")
    write(tmp_path / "y.yml", "SOLVER:\n  BASE_LR: 0.3\n  MAX_EPOCH: 3\n")
    z = write(tmp_path / "z.yml", "_BASE_: [x.yml, y.yml]\n")
    cfg = get_cfg().merge_from_file(z)
    assert cfg.SOLVER.BASE_LR == 0.3 and cfg.SOLVER.MAX_EPOCH == 3


def test_missing_base_names_the_referrer(tmp_path):
    a = write(tmp_path / "a.yml", "_BASE_: nowhere.yml\n")
    with pytest.raises(FileNotFoundError, match="nowhere.yml.*a.yml"):
        get_cfg().merge_from_file(a)


def test_overrides_after_file(tmp_path):
    f = write(tmp_path / "a.yml", "SOLVER:\n  BASE_LR: 0.2\n")
    cfg = get_cfg().merge_from_file(f)
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.003", "INPUT.SIZE_TRAIN", "[32, 16]",
                         "TEST.RERANK.ENABLED", "True", "OUTPUT_DIR", "logs/x"])
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.003)
    assert cfg.INPUT.SIZE_TRAIN == [32, 16]
    assert cfg.TEST.RERANK.ENABLED is True
    assert cfg.OUTPUT_DIR == "logs/x"
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        cfg.merge_from_list(["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="SOLVER.MAX_EPOCH.*expects a int"):
        cfg.merge_from_list(["SOLVER.MAX_EPOCH", "many"])


def test_typo_in_file_names_key_file_and_nearest(tmp_path):
    f = write(tmp_path / "typo.yml", "SOLVER:\n  BASE_LRR: 0.2\n")
    with pytest.raises(ConfigError) as err:
        get_cfg().merge_from_file(f)
    msg = str(err.value)
    assert "SOLVER.BASE_LRR" in msg and "typo.yml" in msg and "'SOLVER.BASE_LR'" in msg


def test_typo_in_base_file_is_attributed_to_the_base(tmp_path):
    write(tmp_path / "base.yml", "TEST:\n  RERANK:\n    ENABLE: true\n")
    child = write(tmp_path / "child.yml", "_BASE_: base.yml\n")
    with pytest.raises(ConfigError) as err:
        get_cfg().merge_from_file(child)
    assert "base.yml" in str(err.value) and "TEST.RERANK.ENABLED" in str(err.value)


def test_typo_on_command_line():
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.DEPTH"):
        get_cfg().merge_from_list(["MODEL.BACKBONE.DEPTHH", "18"])


PLUGIN_SOURCE = '''
from fastreid_ms.config import CfgNode, register_config_extension
from fastreid_ms.modeling.heads.build import HEAD_REGISTRY

@register_config_extension
def add_toy_keys(cfg):
    cfg.TOY = CfgNode()
    cfg.TOY.WIDTH = 3
    cfg.MODEL.HEADS.TOY_SCALE = 1.5

@HEAD_REGISTRY.register()
class ToyPluginHead:
    def __init__(self, cfg):
        self.width = cfg.TOY.WIDTH
'''


def test_plugin_registers_components_and_keys(tmp_path, monkeypatch):
    pkg = tmp_path / "toy_plugin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Without the plugin the key is unknown.
    with pytest.raises(ConfigError, match="PLUGINS"):
        get_cfg().merge_from_list(["TOY.WIDTH", "5"])
    write(tmp_path / "base.yml", "PLUGINS: [toy_plugin_pkg]\n")
    child = write(tmp_path / "child.yml",
                  "_BASE_: base.yml\nTOY:\n  WIDTH: 7\nMODEL:\n  HEADS:\n    NAME: ToyPluginHead\n")
    cfg = get_cfg().merge_from_file(child)
    assert cfg.PLUGINS == ["toy_plugin_pkg"]
    assert cfg.TOY.WIDTH == 7 and cfg.MODEL.HEADS.TOY_SCALE == 1.5
    from fastreid_ms.modeling.heads.build import build_heads
    assert build_heads(cfg).width == 7
    # Re-applying the extension never overwrites a user value.
    cfg._apply_extensions()
    assert cfg.TOY.WIDTH == 7
    sys.modules.pop("toy_plugin_pkg", None)


def test_unimportable_plugin(tmp_path):
    f = write(tmp_path / "a.yml", "PLUGINS: [no_such_module_xyz]\n")
    with pytest.raises(ConfigError, match="no_such_module_xyz.*a.yml"):
        get_cfg().merge_from_file(f)


def test_config_yaml_round_trip(tmp_path):
    cfg = get_cfg().merge_from_file("configs/Market1501/alignedpp_R50.yml") \
        if os.path.exists("configs/Market1501/alignedpp_R50.yml") else get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.125", "INPUT.SIZE_TEST", "[96, 48]"])
    dumped = tmp_path / "config.yaml"
    dumped.write_text(cfg.dump())
    again = get_cfg().merge_from_file(str(dumped))
    assert again == cfg
    assert yaml.safe_load(dumped.read_text())["SOLVER"]["BASE_LR"] == 0.125
