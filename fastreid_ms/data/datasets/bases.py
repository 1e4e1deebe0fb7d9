"""Base class of the image re-ID datasets, their statistics table and layout errors.

A dataset is three lists of ``(image path, person id, camera id)``: ``train`` (person
ids relabelled 0..N-1 in sorted order of the original ids), ``query`` and ``gallery``
(original ids; 0 marks a distractor in the gallery). Camera ids are 0-based.
"""
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from tabulate import tabulate

from ...utils.logger import get_logger

Item = Tuple[str, int, int]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetLayoutError(FileNotFoundError, ValueError):
    """A dataset folder is missing, incomplete or holds files that do not parse.

    The message names the path at fault and shows the expected layout; entry points
    catch this class and print just the message.
    """

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def layout_error(dataset: str, problem: str, path: str, expected_layout: str,
                 hint: str = "") -> DatasetLayoutError:
    """Build a :class:`DatasetLayoutError` naming ``path`` and showing ``expected_layout``."""
    lines = [f"{dataset}: {problem}: {os.path.abspath(path)}",
             "Expected layout:", expected_layout.rstrip("\n")]
    if hint:
        lines.append(hint)
    return DatasetLayoutError("\n".join(lines))


def find_dataset_dir(root: str, candidates: Sequence[str], dataset: str,
                     expected_layout: str) -> str:
    """The first of ``root/<candidate>`` that is a folder; a clear error when none is."""
    if not os.path.isdir(root):
        raise layout_error(
            dataset, "the dataset root DATASETS.ROOT does not exist", root, expected_layout,
            hint="Set DATASETS.ROOT to the folder that holds the unpacked dataset "
                 "(for example DATASETS.ROOT /data/reid).")
    for name in candidates:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return path
    tried = " or ".join(f"'{c}/'" for c in candidates)
    raise layout_error(
        dataset, f"no dataset folder ({tried}) under the dataset root",
        os.path.join(root, candidates[0]), expected_layout,
        hint=f"Unpack the dataset into {os.path.abspath(root)} or point DATASETS.ROOT "
             "at the folder that holds it.")


def require_dir(path: str, dataset: str, expected_layout: str) -> str:
    """``path`` if it is a folder, else a layout error naming it."""
    if not os.path.isdir(path):
        raise layout_error(dataset, f"the split folder '{os.path.basename(path)}' is missing",
                           path, expected_layout)
    return path


def require_file(path: str, dataset: str, expected_layout: str) -> str:
    """``path`` if it is a file, else a layout error naming it."""
    if not os.path.isfile(path):
        raise layout_error(dataset, f"the file '{os.path.basename(path)}' is missing",
                           path, expected_layout)
    return path


def list_images(dir_path: str) -> List[str]:
    """Image files directly inside ``dir_path`` (by extension), sorted by name."""
    names = [n for n in os.listdir(dir_path)
             if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    return [os.path.join(dir_path, n) for n in sorted(names)]


def parse_market_style_dir(dir_path: str, dataset: str, expected_layout: str,
                           camera_limit: Optional[int] = None, keep_distractors: bool = True,
                           pattern: str = r"^([-\d]+)_c(\d+)") -> List[Item]:
    """Parse a folder of Market1501-style names (``0002_c1s1_000451_03.jpg``).

    Returns ``(path, pid, camid)`` with 0-based cameras, junk (pid -1) left out and
    distractors (pid 0) left out unless ``keep_distractors``. An unparseable name, a
    camera outside 1..``camera_limit`` or an empty split raises a layout error.
    """
    require_dir(dir_path, dataset, expected_layout)
    regex = re.compile(pattern)
    items: List[Item] = []
    for path in list_images(dir_path):
        name = os.path.basename(path)
        match = regex.match(name)
        if match is None:
            raise layout_error(dataset, f"the image name '{name}' does not parse as "
                               "<person id>_c<camera>... (e.g. 0002_c1s1_000451_03.jpg)",
                               path, expected_layout,
                               hint="Remove or rename files that are not dataset images.")
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid == -1:
            continue
        if pid < -1 or cam < 1 or (camera_limit is not None and cam > camera_limit):
            raise layout_error(dataset, f"the image name '{name}' has person id {pid} and "
                               f"camera {cam}; expected ids >= -1 and cameras "
                               f"1..{camera_limit or 'N'}", path, expected_layout)
        if pid == 0 and not keep_distractors:
            continue
        items.append((path, pid, cam - 1))
    if not items:
        raise layout_error(dataset, f"the split folder '{os.path.basename(dir_path)}' holds "
                           "no usable images", dir_path, expected_layout)
    return items


def check_splits(splits, known: Sequence[str], dataset: str, path: str,
                 expected_layout: str) -> None:
    """A layout error naming the first key of ``splits`` that is not one of ``known``."""
    for split in splits:
        if split not in known:
            raise layout_error(dataset, f"unknown split '{split}' (the splits are "
                               f"{', '.join(known)})", path, expected_layout)


def check_queries_in_gallery(query: Sequence[Item], gallery: Sequence[Item], dataset: str,
                             path: str, expected_layout: str) -> int:
    """The number of query identities with no image in the gallery, logged as a warning
    (their queries count in no metric); a layout error when no query identity is there."""
    if not query:
        return 0
    gallery_ids = {pid for _, pid, _ in gallery}
    query_ids = sorted({pid for _, pid, _ in query})
    absent = [pid for pid in query_ids if pid not in gallery_ids]
    if not absent:
        return 0
    images = sum(1 for _, pid, _ in query if pid not in gallery_ids)
    message = (f"{len(absent)} of {len(query_ids)} query identities ({images} query images) have "
               f"no image in the gallery (e.g. {', '.join(str(p) for p in absent[:5])})")
    if len(absent) == len(query_ids):
        raise layout_error(dataset, message + "; nothing can be evaluated", path,
                           expected_layout, hint="Query and gallery must share identities: "
                           "check that both use the same person ids.")
    get_logger().warning("%s: %s: those queries are left out of every metric.", dataset, message)
    return len(absent)


def relabel(items: Iterable[Item]) -> List[Item]:
    """Map person ids to 0..N-1 in sorted order of the original ids (same on every rank)."""
    items = list(items)
    pid_map: Dict[int, int] = {pid: i for i, pid in enumerate(sorted({p for _, p, _ in items}))}
    return [(path, pid_map[pid], cam) for path, pid, cam in items]


def split_statistics(items: Sequence[Item]) -> Tuple[int, int, int]:
    """(number of ids, number of images, number of cameras) of a split."""
    return (len({p for _, p, _ in items}), len(items), len({c for _, _, c in items}))


class ImageDataset:
    """Base class: holds ``train`` / ``query`` / ``gallery`` and prints their statistics.

    Subclasses parse their folders and call ``super().__init__(train, query, gallery)``
    with the train ids not yet relabelled. ``from_config(cfg)`` builds one from a config.
    """

    dataset_name = "dataset"

    def __init__(self, train: List[Item], query: List[Item], gallery: List[Item],
                 verbose: bool = True):
        self.train = relabel(sorted(train))
        self.query = list(query)
        self.gallery = list(gallery)
        self.num_train_pids, _, self.num_train_cams = split_statistics(self.train)
        if verbose:
            get_logger().info("Loaded %s:\n%s", self.dataset_name, self.statistics_table())

    @classmethod
    def from_config(cls, cfg):
        """The dataset under ``cfg.DATASETS.ROOT``."""
        return cls(root=cfg.DATASETS.ROOT)

    def statistics_table(self) -> str:
        rows = [(name, *split_statistics(items)) for name, items in
                (("train", self.train), ("query", self.query), ("gallery", self.gallery))]
        return tabulate(rows, headers=["subset", "# ids", "# images", "# cameras"],
                        tablefmt="pipe")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(train={len(self.train)}, query={len(self.query)}, "
                f"gallery={len(self.gallery)}, num_train_pids={self.num_train_pids})")
