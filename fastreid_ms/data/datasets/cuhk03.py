"""CUHK03-NP (Zhong et al., CVPR 2017 re-ranking protocol): 767 train / 700 test ids,
detected or hand-labelled boxes, Market-style folders."""
import os

from .bases import find_dataset_dir
from .build import DATASET_REGISTRY
from .market1501 import Market1501

CUHK03_LAYOUT = """\
<DATASETS.ROOT>/
  cuhk03-np/                    (or CUHK03-NP/)
    detected/                   (DATASETS.CUHK03.LABELED False)
      bounding_box_train/       0001_c1_1.png ...  (<id>_c<camera>_<n>.png)
      query/
      bounding_box_test/
    labeled/                    (DATASETS.CUHK03.LABELED True)
      bounding_box_train/
      query/
      bounding_box_test/
"""


@DATASET_REGISTRY.register()
class CUHK03(Market1501):
    """CUHK03-NP under ``root``; ``labeled`` picks the hand-labelled boxes, else detected."""

    dataset_name = "CUHK03"
    expected_layout = CUHK03_LAYOUT
    num_cameras = None

    def __init__(self, root: str = "datasets", labeled: bool = False, verbose: bool = True,
                 **kwargs):
        self.labeled = bool(labeled)
        kind = "labeled" if self.labeled else "detected"
        self.dataset_name = f"CUHK03 ({kind})"
        base = find_dataset_dir(root, ("cuhk03-np", "CUHK03-NP"), self.dataset_name,
                                self.expected_layout)
        self.dataset_dirs = (os.path.join(os.path.basename(base), kind),)
        super().__init__(root=root, verbose=verbose)

    @classmethod
    def from_config(cls, cfg):
        return cls(root=cfg.DATASETS.ROOT, labeled=cfg.DATASETS.CUHK03.LABELED)
