"""Shared fixtures: a small synthetic dataset (drawn once per session) and a tiny config."""
import logging
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/_builders.py

import fastreid_ms  # noqa: E402,F401  (sets the CPU ISA before MindSpore runs)
import mindspore as ms  # noqa: E402

# Choose the device before any kernel runs: MindSpore refuses set_device() once its runtime
# has started unless the device was set explicitly, and several tests (and the tools they
# call) set it again.
ms.set_device("CPU")

# The small synthetic dataset every test can share (see ``synthetic_root``).
SMALL_SYNTHETIC = {"SEED": 0, "NUM_TRAIN_IDS": 12, "NUM_TEST_IDS": 10, "IMAGES_PER_ID": 6,
                   "NUM_CAMERAS": 6, "HEIGHT": 64, "WIDTH": 32}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """DATASETS.ROOT holding the small synthetic dataset of SMALL_SYNTHETIC (12 train ids,
    10 test ids, 6 images each, 64x32), drawn once per test session."""
    from fastreid_ms.data.datasets import Synthetic
    root = str(tmp_path_factory.mktemp("datasets"))
    Synthetic(root=root, **{k.lower(): v for k, v in SMALL_SYNTHETIC.items()}, verbose=False)
    return root


@pytest.fixture
def synthetic_cfg(synthetic_root):
    """A fresh default config reading the small synthetic dataset with tiny inputs (64x32),
    P x K = 4 x 2 batches, no worker processes."""
    from fastreid_ms.config import get_cfg
    cfg = get_cfg()
    cfg.DATASETS.NAMES = ["Synthetic"]
    cfg.DATASETS.TESTS = ["Synthetic"]
    cfg.DATASETS.ROOT = synthetic_root
    for key, value in SMALL_SYNTHETIC.items():
        cfg.DATASETS.SYNTHETIC[key] = value
    cfg.INPUT.SIZE_TRAIN = [64, 32]
    cfg.INPUT.SIZE_TEST = [64, 32]
    cfg.SOLVER.IMS_PER_BATCH = 8
    cfg.DATALOADER.NUM_INSTANCE = 2
    cfg.DATALOADER.NUM_WORKERS = 1
    cfg.TEST.IMS_PER_BATCH = 16
    return cfg


@pytest.fixture(autouse=True)
def _toolbox_logs_reach_caplog():
    """setup_logger() (called by trainer / tool tests) stops propagation of the "fastreid_ms"
    logger; let the next test's caplog see its records again."""
    logging.getLogger("fastreid_ms").propagate = True
    yield


@pytest.fixture
def pynative():
    """Run the test in PYNATIVE mode (it may switch to GRAPH itself); the previous mode is
    restored afterwards. Files use it through ``pytestmark = pytest.mark.usefixtures("pynative")``."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)
