"""The synthetic dataset: drawn on first use under DATASETS.ROOT in Market-1501 layout."""
import dataclasses
import os

from ..synthetic_generator import SyntheticParams, write_dataset_atomic
from ...utils.logger import get_logger
from .build import DATASET_REGISTRY
from .market1501 import Market1501


@DATASET_REGISTRY.register()
class Synthetic(Market1501):
    """Generated people of coloured parts (see ``fastreid_ms/data/synthetic_generator.py``).

    The images live in ``root/synthetic_reid_<hash of the parameters>/`` and are drawn
    (atomically) the first time that folder is missing; afterwards it parses like
    Market1501.
    """

    dataset_name = "Synthetic"

    def __init__(self, root: str = "datasets", seed: int = 0, num_train_ids: int = 100,
                 num_test_ids: int = 100, images_per_id: int = 12, num_cameras: int = 6,
                 height: int = 128, width: int = 64, verbose: bool = True, **kwargs):
        self.params = SyntheticParams(seed=int(seed), num_train_ids=int(num_train_ids),
                                      num_test_ids=int(num_test_ids),
                                      images_per_id=int(images_per_id),
                                      num_cameras=int(num_cameras), height=int(height),
                                      width=int(width))
        self.params.validate()
        folder = f"synthetic_reid_{self.params.digest()}"
        path = os.path.join(root, folder)
        if not os.path.isfile(os.path.join(path, "synthetic.json")):
            get_logger().info("Drawing the synthetic dataset %s into %s",
                              dataclasses.asdict(self.params), os.path.abspath(path))
            try:
                write_dataset_atomic(path, self.params)
            except OSError as exc:
                raise OSError(f"Could not draw the synthetic dataset into {os.path.abspath(path)}: "
                              f"{exc}. Set DATASETS.ROOT to a writable folder with free space."
                              ) from exc
        self.dataset_dirs = (folder,)
        self.num_cameras = self.params.num_cameras
        super().__init__(root=root, verbose=verbose)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.DATASETS.SYNTHETIC
        return cls(root=cfg.DATASETS.ROOT, seed=s.SEED, num_train_ids=s.NUM_TRAIN_IDS,
                   num_test_ids=s.NUM_TEST_IDS, images_per_id=s.IMAGES_PER_ID,
                   num_cameras=s.NUM_CAMERAS, height=s.HEIGHT, width=s.WIDTH)
