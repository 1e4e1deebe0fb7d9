"""Your own images listed in text files, one ``<path> <person id> <camera id>`` per line
(no code needed).

    DATASETS: {NAMES: ["ListFiles"], TESTS: ["ListFiles"], ROOT: /data,
               LISTS: {TRAIN: my/train.txt, QUERY: my/query.txt, GALLERY: my/gallery.txt}}
"""
import os
from typing import List

from .bases import Item, ImageDataset, check_queries_in_gallery, check_splits, layout_error
from .build import DATASET_REGISTRY

LIST_LAYOUT = """\
<DATASETS.ROOT>/
  <DATASETS.LISTS.TRAIN>        e.g. lists/train.txt; one image per line:
                                  <image path> <person id> <camera id>
                                  images/0001/a.jpg 1 0
  <DATASETS.LISTS.QUERY>        (TRAIN "" for a test-only dataset)
  <DATASETS.LISTS.GALLERY>
  Paths are relative to DATASETS.LISTS.IMAGE_ROOT (default DATASETS.ROOT) unless absolute;
  person ids are integers (-1: junk, left out), camera ids integers from 0; blank lines and
  lines starting with '#' are skipped.
"""

SPLITS = ("train", "query", "gallery")


def _resolve(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base, path)


@DATASET_REGISTRY.register()
class ListFiles(ImageDataset):
    """Train / query / gallery from list files (see LIST_LAYOUT).

    lists: {split: list file} for "train", "query", "gallery" (relative to ``root`` unless
    absolute; train may be "" for evaluation only); image_root: the folder the image paths
    are relative to ("" = ``root``). Every listed image must exist. Identities are used as
    written (train relabelled 0..N-1), no distractor convention; a query identity absent from
    the gallery is counted in a warning.
    """

    dataset_name = "ListFiles"

    def __init__(self, root: str = "datasets", lists=None, image_root: str = "",
                 verbose: bool = True, **kwargs):
        self.root = root
        lists = dict(lists or {})
        check_splits(lists, SPLITS, self.dataset_name, root, LIST_LAYOUT)
        for split in ("query", "gallery"):
            if not lists.get(split):
                raise layout_error(self.dataset_name, f"no {split} list given: set "
                                   f"DATASETS.LISTS.{split.upper()}", root, LIST_LAYOUT)
        self.image_root = _resolve(root, image_root) if image_root else root
        train = self._parse(lists["train"]) if lists.get("train") else []
        query = self._parse(lists["query"])
        gallery = self._parse(lists["gallery"])
        check_queries_in_gallery(query, gallery, self.dataset_name,
                                 _resolve(root, lists["query"]), LIST_LAYOUT)
        super().__init__(train, query, gallery, verbose=verbose)

    def _parse(self, list_file: str) -> List[Item]:
        path = _resolve(self.root, list_file)
        if not os.path.isfile(path):
            raise layout_error(self.dataset_name, f"the list file '{list_file}' is missing", path,
                               LIST_LAYOUT)
        items: List[Item] = []
        missing: List[str] = []
        with open(path, "r", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                fields = text.split()
                try:
                    if len(fields) != 3:
                        raise ValueError
                    rel, pid, camid = fields[0], int(fields[1]), int(fields[2])
                except ValueError:
                    raise layout_error(self.dataset_name, f"line {line_no} ({text!r}) does not "
                                       "parse as '<image path> <person id> <camera id>'", path,
                                       LIST_LAYOUT) from None
                if pid < -1 or camid < 0:
                    raise layout_error(self.dataset_name, f"line {line_no} ({text!r}): person id "
                                       f"{pid} and camera id {camid}; expected ids >= -1 and "
                                       "cameras >= 0", path, LIST_LAYOUT)
                image = _resolve(self.image_root, rel)
                if not os.path.isfile(image):
                    missing.append(f"line {line_no}: {image}")
                    continue
                if pid != -1:
                    items.append((image, pid, camid))
        if missing:
            raise layout_error(self.dataset_name, f"{len(missing)} image(s) listed in "
                               f"'{list_file}' do not exist (first: {missing[0]})", path,
                               LIST_LAYOUT, hint="Fix the paths, or set DATASETS.LISTS.IMAGE_ROOT "
                               "to the folder they are relative to.")
        if not items:
            raise layout_error(self.dataset_name, f"the list file '{list_file}' lists no usable "
                               "image", path, LIST_LAYOUT)
        return items

    @classmethod
    def from_config(cls, cfg):
        lists = cfg.DATASETS.LISTS
        return cls(root=cfg.DATASETS.ROOT, image_root=lists.IMAGE_ROOT,
                   lists={"train": lists.TRAIN, "query": lists.QUERY, "gallery": lists.GALLERY})
