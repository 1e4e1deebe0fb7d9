"""DukeMTMC-reID (Zheng et al., ICCV 2017): 1,404 identities plus distractors, 8 cameras."""
from .build import DATASET_REGISTRY
from .market1501 import Market1501

DUKE_LAYOUT = """\
<DATASETS.ROOT>/
  DukeMTMC-reID/
    bounding_box_train/         0001_c2_f0046182.jpg ...  (<id>_c<camera>_f<frame>.jpg)
    query/                      0005_c2_f0046985.jpg ...
    bounding_box_test/          0002_c1_f0044158.jpg ...
"""


@DATASET_REGISTRY.register()
class DukeMTMC(Market1501):
    """DukeMTMC-reID under ``root`` (same three splits and rules as Market1501)."""

    dataset_name = "DukeMTMC"
    dataset_dirs = ("DukeMTMC-reID", "dukemtmcreid/DukeMTMC-reID", "dukemtmc-reid")
    expected_layout = DUKE_LAYOUT
    num_cameras = 8
