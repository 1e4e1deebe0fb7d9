#!/usr/bin/env python
"""Write the synthetic person re-ID dataset (Market-1501 layout) to a folder.

    python tools/make_synthetic_dataset.py --output datasets/synthetic_demo --seed 0

The folder then reads as Market1501 (point DATASETS.ROOT at its parent and rename it
``market1501``) or, with the same parameters, is what DATASETS.NAMES ["Synthetic"]
draws on first use under DATASETS.ROOT.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastreid_ms.data.synthetic_generator import SyntheticParams, write_dataset_atomic  # noqa: E402


def parse_args(argv=None):
    defaults = SyntheticParams()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder to create (must not exist)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--num-train-ids", type=int, default=defaults.num_train_ids)
    parser.add_argument("--num-test-ids", type=int, default=defaults.num_test_ids)
    parser.add_argument("--images-per-id", type=int, default=defaults.images_per_id)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--cameras", type=int, default=defaults.num_cameras)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = SyntheticParams(seed=args.seed, num_train_ids=args.num_train_ids,
                             num_test_ids=args.num_test_ids, images_per_id=args.images_per_id,
                             num_cameras=args.cameras, height=args.height, width=args.width)
    try:
        params.validate()
        if os.path.exists(args.output):
            raise FileExistsError(f"{os.path.abspath(args.output)} already exists; remove it or "
                                  "choose another --output.")
        start = time.perf_counter()
        write_dataset_atomic(args.output, params)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote the synthetic dataset to {os.path.abspath(args.output)} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
