"""Your own images in Market1501 naming, in any folder under DATASETS.ROOT (no code needed).

    DATASETS: {NAMES: ["MarketFolder"], TESTS: ["MarketFolder"], ROOT: /data,
               FOLDER: {NAME: my_people}}
"""
import os

from .bases import (ImageDataset, check_queries_in_gallery, check_splits, layout_error,
                    parse_market_style_dir)
from .build import DATASET_REGISTRY

FOLDER_LAYOUT = """\
<DATASETS.ROOT>/
  <DATASETS.FOLDER.NAME>/
    bounding_box_train/    0002_c1s1_000451_03.jpg ...  (<person id>_c<camera>...; jpg/png/bmp)
    query/                 (DATASETS.FOLDER.TRAIN / QUERY / GALLERY rename these;
    bounding_box_test/      TRAIN "" for a test-only folder)
  Person id -1: junk (left out); 0 in the gallery: distractor; cameras c1, c2, ...
"""

SPLITS = ("train", "query", "gallery")
DEFAULT_SPLIT_DIRS = {"train": "bounding_box_train", "query": "query",
                      "gallery": "bounding_box_test"}


@DATASET_REGISTRY.register()
class MarketFolder(ImageDataset):
    """Images named as Market1501's (``<id>_c<camera>...``) under ``root/name``.

    split_dirs: {split: sub-folder} for "train", "query", "gallery" (default Market1501's
    names; an empty train folder name gives no training set, for evaluation only). The rules
    are Market1501's: junk (-1) dropped, distractors (0) kept in the gallery only, cameras
    0-based. A query identity absent from the gallery is counted in a warning.
    """

    dataset_name = "MarketFolder"

    def __init__(self, root: str = "datasets", name: str = "", split_dirs=None,
                 verbose: bool = True, **kwargs):
        self.root = root
        self.dataset_name = f"MarketFolder ({name})" if name else "MarketFolder"
        if not name:
            raise layout_error(self.dataset_name, "no folder given: set DATASETS.FOLDER.NAME to "
                               "the folder of your images under DATASETS.ROOT", root,
                               FOLDER_LAYOUT)
        self.dataset_dir = os.path.join(root, name)
        dirs = dict(DEFAULT_SPLIT_DIRS)
        if split_dirs:
            check_splits(split_dirs, SPLITS, self.dataset_name, self.dataset_dir, FOLDER_LAYOUT)
            dirs.update(split_dirs)
        if not os.path.isdir(self.dataset_dir):
            raise layout_error(self.dataset_name, "the folder DATASETS.FOLDER.NAME does not exist",
                               self.dataset_dir, FOLDER_LAYOUT)
        train = self._parse(dirs["train"], keep_distractors=False) if dirs["train"] else []
        query = self._parse(dirs["query"], keep_distractors=False)
        gallery = self._parse(dirs["gallery"], keep_distractors=True)
        check_queries_in_gallery(query, gallery, self.dataset_name, self.dataset_dir,
                                 FOLDER_LAYOUT)
        super().__init__(train, query, gallery, verbose=verbose)

    def _parse(self, sub: str, keep_distractors: bool):
        return parse_market_style_dir(os.path.join(self.dataset_dir, sub), self.dataset_name,
                                      FOLDER_LAYOUT, keep_distractors=keep_distractors)

    @classmethod
    def from_config(cls, cfg):
        f = cfg.DATASETS.FOLDER
        return cls(root=cfg.DATASETS.ROOT, name=f.NAME,
                   split_dirs={"train": f.TRAIN, "query": f.QUERY, "gallery": f.GALLERY})
