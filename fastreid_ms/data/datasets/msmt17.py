"""MSMT17 (Wei et al., CVPR 2018): 4,101 identities from 15 cameras, split by list files."""
import os
from typing import List

from .bases import Item, ImageDataset, find_dataset_dir, layout_error, require_dir, require_file
from .build import DATASET_REGISTRY

MSMT17_LAYOUT = """\
<DATASETS.ROOT>/
  MSMT17_V1/                    (or MSMT17_V2/, msmt17/MSMT17_V1/, msmt17/MSMT17_V2/)
    train/                      (V2: mask_train_v2/)  0000/0000_000_01_0303morning_0015_0.jpg ...
    test/                       (V2: mask_test_v2/)
    list_train.txt              lines "<path relative to train/> <person id>"
    list_val.txt                (also images of train/; merged into the training set)
    list_query.txt              lines "<path relative to test/> <person id>"
    list_gallery.txt
  The camera is the third '_' field of the image name (01..15).
"""

# (folder name, train folder, test folder)
_VERSIONS = (("MSMT17_V1", "train", "test"), ("MSMT17_V2", "mask_train_v2", "mask_test_v2"))


@DATASET_REGISTRY.register()
class MSMT17(ImageDataset):
    """MSMT17 V1 or V2 under ``root`` (train = list_train + list_val, as is customary)."""

    dataset_name = "MSMT17"

    def __init__(self, root: str = "datasets", verbose: bool = True, **kwargs):
        self.root = root
        candidates = [name for name, _, _ in _VERSIONS]
        candidates += [os.path.join("msmt17", name) for name, _, _ in _VERSIONS]
        self.dataset_dir = find_dataset_dir(root, candidates, self.dataset_name, MSMT17_LAYOUT)
        version = os.path.basename(self.dataset_dir)
        _, train_name, test_name = next(v for v in _VERSIONS if v[0] == version)
        train_dir = require_dir(os.path.join(self.dataset_dir, train_name), self.dataset_name,
                                MSMT17_LAYOUT)
        test_dir = require_dir(os.path.join(self.dataset_dir, test_name), self.dataset_name,
                               MSMT17_LAYOUT)
        train = self._parse_list(train_dir, "list_train.txt")
        train += self._parse_list(train_dir, "list_val.txt")
        query = self._parse_list(test_dir, "list_query.txt")
        gallery = self._parse_list(test_dir, "list_gallery.txt")
        super().__init__(train, query, gallery, verbose=verbose)

    def _parse_list(self, image_dir: str, list_name: str) -> List[Item]:
        list_path = require_file(os.path.join(self.dataset_dir, list_name), self.dataset_name,
                                 MSMT17_LAYOUT)
        items: List[Item] = []
        with open(list_path, "r", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    rel_path, pid = fields[0], int(fields[1])
                    camid = int(os.path.basename(rel_path).split("_")[2]) - 1
                except (IndexError, ValueError):
                    raise layout_error(
                        self.dataset_name, f"line {line_no} ({line.strip()!r}) does not parse as "
                        "'<relative path>/<id>_<n>_<camera>_... .jpg <person id>'",
                        list_path, MSMT17_LAYOUT) from None
                if camid < 0:
                    raise layout_error(self.dataset_name, f"line {line_no}: camera {camid + 1} "
                                       "in the image name; cameras start at 01",
                                       list_path, MSMT17_LAYOUT)
                items.append((os.path.join(image_dir, rel_path), pid, camid))
        if not items:
            raise layout_error(self.dataset_name, f"the list file '{list_name}' is empty",
                               list_path, MSMT17_LAYOUT)
        if not os.path.isfile(items[0][0]):  # a cheap check that the list fits the folder
            raise layout_error(self.dataset_name, f"the first image listed in '{list_name}' "
                               "does not exist", items[0][0], MSMT17_LAYOUT)
        return items
