"""The run a config describes, next to the published run it is named after (RECIPE.*).

A recipe config (e.g. configs/Market1501/alignedpp_R50.yml, the seed's 8-NPU run) states the
devices, global batch, K and epochs of the run it reproduces. Launched on another number of
devices, or with overrides, the same config runs what it says; the trainer logs both runs
side by side and warns about every difference, so that a hybrid is never silent.

Iterations per epoch follow the identity sampler: each device takes ``num_ids // devices``
identities per pass and a batch holds ``P = per-device batch / K`` of them, so an epoch is
``(num_ids // devices) // P`` iterations (SOLVER.ITERS_PER_EPOCH overrides it for both).
"""
from dataclasses import dataclass
from typing import List, Optional

from tabulate import tabulate

from ..data.samplers.identity_sampler import epoch_iterations


@dataclass(frozen=True)
class RunShape:
    """Batch geometry and length of one training run."""
    devices: int
    global_batch: int
    num_instance: int
    iters_per_epoch: int
    max_epoch: int

    @property
    def per_device(self) -> int:
        return self.global_batch // self.devices

    @property
    def ids_per_device(self) -> int:
        """P: identities in one device's batch."""
        return self.per_device // self.num_instance

    @property
    def updates(self) -> int:
        return self.iters_per_epoch * self.max_epoch

    def batch_text(self) -> str:
        return f"{self.per_device} ({self.ids_per_device} x {self.num_instance})"


def recipe_devices(cfg) -> int:
    """The devices a config is meant for: RECIPE.NUM_DEVICES, 1 without a recipe."""
    return int(cfg.RECIPE.NUM_DEVICES) if cfg.RECIPE.NAME else 1


def recipe_shape(cfg, num_ids: int) -> Optional[RunShape]:
    """The RECIPE.* run on a training set of ``num_ids`` identities (None without RECIPE.NAME)."""
    r = cfg.RECIPE
    if not r.NAME:
        return None
    devices, batch, k = int(r.NUM_DEVICES), int(r.IMS_PER_BATCH), int(r.NUM_INSTANCE)
    if devices < 1 or k < 1 or batch % (devices * k) != 0:
        raise ValueError(f"RECIPE '{r.NAME}' is inconsistent: RECIPE.IMS_PER_BATCH ({batch}) must "
                         f"be a multiple of RECIPE.NUM_INSTANCE ({k}) x RECIPE.NUM_DEVICES "
                         f"({devices}).")
    iters = int(cfg.SOLVER.ITERS_PER_EPOCH) or epoch_iterations(num_ids, devices,
                                                                batch // devices // k)
    return RunShape(devices, batch, k, iters, int(r.MAX_EPOCH))


def run_shape(cfg, world_size: int, iters_per_epoch: int) -> RunShape:
    """This run, from the config, the device count and the loader's iterations per epoch."""
    return RunShape(int(world_size), int(cfg.SOLVER.IMS_PER_BATCH),
                    int(cfg.DATALOADER.NUM_INSTANCE), int(iters_per_epoch),
                    int(cfg.SOLVER.MAX_EPOCH))


_ROWS = (("devices", lambda s: str(s.devices)),
         ("global batch", lambda s: str(s.global_batch)),
         ("per-device batch (P x K)", RunShape.batch_text),
         ("iterations per epoch", lambda s: str(s.iters_per_epoch)),
         ("epochs", lambda s: str(s.max_epoch)),
         ("updates", lambda s: f"{s.updates:,}"))


def recipe_report(cfg, num_ids: int, world_size: int, iters_per_epoch: int):
    """``(table, differences)``: a table of this run (and of RECIPE.* when the config names
    one) and the list of "what: this run X, recipe Y" lines where they differ."""
    ours = run_shape(cfg, world_size, iters_per_epoch)
    ref = recipe_shape(cfg, num_ids)
    if ref is None:
        rows = [[name, fmt(ours)] for name, fmt in _ROWS]
        return tabulate(rows, headers=["", "this run"], tablefmt="github"), []
    rows = [[name, fmt(ours), fmt(ref)] for name, fmt in _ROWS]
    table = tabulate(rows, headers=["", "this run", f"recipe: {cfg.RECIPE.NAME}"],
                     tablefmt="github")
    differences: List[str] = []
    for name, fmt in _ROWS:
        if fmt(ours) != fmt(ref):
            differences.append(f"{name}: this run {fmt(ours)}, recipe {fmt(ref)}")
    if ours.per_device != ref.per_device:
        differences.append(
            f"so batch-norm statistics and hard-example mining see {ours.per_device} images per "
            f"device instead of {ref.per_device}")
    return table, differences


def log_recipe(logger, cfg, num_ids: int, world_size: int, iters_per_epoch: int) -> List[str]:
    """Log :func:`recipe_report` (a warning that lists the differences, if any); returns them."""
    table, differences = recipe_report(cfg, num_ids, world_size, iters_per_epoch)
    logger.info("Training run (%d identities):\n%s", num_ids, table)
    if not cfg.RECIPE.NAME:
        return differences
    if differences:
        logger.warning(
            "This run is not the recipe it is named after (%s); it runs what the config and "
            "the launch say. Differences: %s. To reproduce the recipe, launch it on %d device(s) "
            "with the config's batch settings.", cfg.RECIPE.NAME, "; ".join(differences),
            int(cfg.RECIPE.NUM_DEVICES))
    else:
        logger.info("This run is the recipe's: %s", cfg.RECIPE.NAME)
    return differences
