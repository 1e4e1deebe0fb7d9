#!/usr/bin/env python
"""Print what a config trains on N devices, next to the run it is named after (RECIPE.*):
devices, global batch, P x K per device, iterations per epoch, updates, and the differences.

    python tools/show_recipe.py --config-file configs/Market1501/alignedpp_R50.yml
    python tools/show_recipe.py --config-file configs/DukeMTMC/alignedpp_R50.yml --devices 4
    python tools/show_recipe.py --config-file my.yml --num-ids 1200  SOLVER.IMS_PER_BATCH 128

The same table the trainer logs at start (fastreid_ms/engine/recipe.py). The training set's
identity count comes from --num-ids, else from the published size of the dataset the config
trains on (DATASETS.NAMES), else from the dataset itself under DATASETS.ROOT. Nothing is built.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastreid_ms.utils.cli import run_cli  # noqa: E402

# Training identities of the published splits (Market-1501, DukeMTMC-reID, MSMT17, CUHK03-NP).
PUBLISHED_TRAIN_IDS = {"Market1501": 751, "DukeMTMC": 702, "MSMT17": 1041, "CUHK03": 767}


def training_ids(cfg) -> int:
    names = list(cfg.DATASETS.NAMES)
    if all(name in PUBLISHED_TRAIN_IDS for name in names):
        return sum(PUBLISHED_TRAIN_IDS[name] for name in names)
    from fastreid_ms.data.build import _combined_train_items
    return len({pid for _, pid, _ in _combined_train_items(cfg)})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--devices", type=int, default=0,
                        help="devices of the launch (default: RECIPE.NUM_DEVICES, else 1)")
    parser.add_argument("--num-ids", type=int, default=0, help="training identities")
    parser.add_argument("opts", nargs="*", help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)

    from fastreid_ms.config import get_cfg
    from fastreid_ms.data.samplers.identity_sampler import (check_batch_divisibility,
                                                           epoch_iterations)
    from fastreid_ms.engine.recipe import recipe_devices, recipe_report
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    devices = args.devices or recipe_devices(cfg)
    num_ids = args.num_ids or training_ids(cfg)
    ids_per_device = check_batch_divisibility(int(cfg.SOLVER.IMS_PER_BATCH),
                                              int(cfg.DATALOADER.NUM_INSTANCE), devices)
    iters = int(cfg.SOLVER.ITERS_PER_EPOCH) or epoch_iterations(num_ids, devices, ids_per_device)
    table, differences = recipe_report(cfg, num_ids, devices, iters)
    print(f"{args.config_file} on {devices} device(s), {num_ids} training identities:")
    print(table)
    if differences:
        print("Differs from the recipe: " + "; ".join(differences) + ".")
    elif cfg.RECIPE.NAME:
        print(f"This is the recipe's run: {cfg.RECIPE.NAME}.")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "show_recipe.py", argv=sys.argv[1:]))
