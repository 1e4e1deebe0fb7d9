"""Market-1501 (Zheng et al., ICCV 2015): 1,501 identities from 6 cameras."""
import os

from .bases import ImageDataset, find_dataset_dir, parse_market_style_dir
from .build import DATASET_REGISTRY

MARKET_LAYOUT = """\
<DATASETS.ROOT>/
  Market-1501-v15.09.15/        (or market1501/)
    bounding_box_train/         0002_c1s1_000451_03.jpg ...  (<id>_c<camera>s<seq>_<frame>_<box>.jpg)
    query/                      0001_c1s1_001051_00.jpg ...
    bounding_box_test/          0000_c1s1_000151_01.jpg ...  (id 0: distractor, -1: junk)
"""


@DATASET_REGISTRY.register()
class Market1501(ImageDataset):
    """Market-1501 under ``root``: junk (-1) dropped everywhere, distractors (0) kept in
    the gallery only, cameras 0-based, train ids relabelled 0..N-1."""

    dataset_name = "Market1501"
    dataset_dirs = ("Market-1501-v15.09.15", os.path.join("market1501", "Market-1501-v15.09.15"),
                    "market1501")
    expected_layout = MARKET_LAYOUT
    num_cameras = 6

    def __init__(self, root: str = "datasets", verbose: bool = True, **kwargs):
        self.root = root
        self.dataset_dir = find_dataset_dir(root, self.dataset_dirs, self.dataset_name,
                                            self.expected_layout)
        train = self._parse("bounding_box_train", keep_distractors=False)
        query = self._parse("query", keep_distractors=False)
        gallery = self._parse("bounding_box_test", keep_distractors=True)
        super().__init__(train, query, gallery, verbose=verbose)

    def _parse(self, split: str, keep_distractors: bool):
        return parse_market_style_dir(os.path.join(self.dataset_dir, split), self.dataset_name,
                                      self.expected_layout, camera_limit=self.num_cameras,
                                      keep_distractors=keep_distractors)
