#!/usr/bin/env python
"""Evaluate the features written by the Ascend 310 program (or infer_mindir.py): CMC / mAP / mINP
and the re-ranking table, with the config's evaluator, written to acc.log.

    python ascend310_infer/postprocess.py --config-file configs/Market1501/alignedpp_R50.yml \\
        --preprocess-dir prep --result-dir result_Files [--output acc.log] [KEY VALUE ...]

Reads ``<preprocess-dir>/{query,gallery}_list.txt`` (lines "stem pid camid path", from
preprocess.py) and ``<result-dir>/{query,gallery}/<stem>_<k>.bin`` with
``output_shapes.txt``. Output k is the feature ``--feature-names[k]``; the default is the
export order (global, local) of fastreid_ms/modeling/export_wrapper.py. The evaluator and
its options (TEST.DISTANCE, TEST.RERANK.ENABLED, ...) come from the config and overrides,
so the table is the one ``tools/train_net.py --eval-only`` prints for the same features.
"""
import argparse
import os
import sys
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastreid_ms  # noqa: E402,F401
from bin_format import SPLITS, list_file, read_list, read_output_shapes  # noqa: E402
from fastreid_ms.modeling.export_wrapper import EXPORT_FEATURE_ORDER  # noqa: E402


def default_feature_names(num_outputs: int):
    """The export order for ``num_outputs`` outputs: ("global",), ("global", "local")."""
    if num_outputs > len(EXPORT_FEATURE_ORDER):
        raise ValueError(f"The model has {num_outputs} outputs: name them with --feature-names "
                         "(the order tools/export.py logged).")
    return EXPORT_FEATURE_ORDER[:num_outputs]


def load_split_features(result_dir: str, stems, feature_names=None):
    """{name: (N, ...) float32} of the images ``stems`` from ``result_dir``."""
    shapes = read_output_shapes(result_dir)
    names = tuple(feature_names) if feature_names else default_feature_names(len(shapes))
    if len(names) != len(shapes):
        raise ValueError(f"{len(names)} feature names ({', '.join(names)}) for {len(shapes)} "
                         f"outputs in '{result_dir}'.")
    feats = OrderedDict()
    for k, (name, shape) in enumerate(zip(names, shapes)):
        size = int(np.prod(shape))
        arr = np.empty((len(stems), *shape), np.float32)
        for i, stem in enumerate(stems):
            path = os.path.join(result_dir, f"{stem}_{k}.bin")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Feature file '{path}' is missing: run the inference on "
                                        "every image of the list first.")
            data = np.fromfile(path, dtype=np.float32)
            if data.size != size:
                raise ValueError(f"'{path}' holds {data.size} values; output {k} ({name}) has "
                                 f"{size} per image ({shape}).")
            arr[i] = data.reshape(shape)
        feats[name] = arr
    return feats


def load_features(preprocess_dir: str, result_dir: str, feature_names=None):
    """Query then gallery: (features dict, pids (N,), camids (N,), num_query, image paths)."""
    all_feats, pids, camids, paths = [], [], [], []
    num_query = 0
    for split in SPLITS:
        rows = read_list(list_file(preprocess_dir, split))
        feats = load_split_features(os.path.join(result_dir, split), [r[0] for r in rows],
                                    feature_names)
        all_feats.append(feats)
        pids.extend(r[1] for r in rows)
        camids.extend(r[2] for r in rows)
        paths.extend(r[3] for r in rows)
        if split == "query":
            num_query = len(rows)
    if list(all_feats[0]) != list(all_feats[1]):
        raise ValueError("Query and gallery results have different outputs: run both with the same MINDIR.")
    features = OrderedDict((k, np.concatenate([f[k] for f in all_feats])) for k in all_feats[0])
    return features, np.asarray(pids, np.int64), np.asarray(camids, np.int64), num_query, paths


def seed_style_report(results) -> str:
    """The model-zoo's acc.log lines ("mAP: 79.3%", "Rank-1 : 91.7%", then the RK block)."""
    lines = []
    for prefix, title in (("", ""), ("RK ", "(RK)")):
        if f"{prefix}mAP" not in results:
            continue
        lines.append("Results ----------")
        lines.append(f"mAP{title}: {results[prefix + 'mAP']:.1f}%")
        lines.append(f"CMC curve{title}")
        for r in (1, 5, 10, 20):
            key = f"{prefix}Rank-{r}"
            if key in results:
                lines.append(f"Rank-{r} : {results[key]:.1f}%")
    return "\n".join(lines)


def postprocess(cfg, preprocess_dir: str, result_dir: str, output: str = "acc.log",
                feature_names=None):
    """Evaluate and write ``output``; returns the results OrderedDict (percent)."""
    from fastreid_ms.evaluation import build_evaluator, results_table
    from fastreid_ms.utils.file_io import atomic_write_text

    features, pids, camids, num_query, _ = load_features(preprocess_dir, result_dir, feature_names)
    if np.all(pids < 0):
        raise ValueError(f"The lists in '{preprocess_dir}' have no person ids (image names did not "
                         "parse as Market1501 names): the features cannot be evaluated.")
    evaluator = build_evaluator(cfg, num_query)
    evaluator.reset()
    evaluator.process(dict(features), pids, camids)
    results = evaluator.evaluate()
    header = (f"fastreid_ms inference results: {num_query} query and {len(pids) - num_query} "
              f"gallery images, features {', '.join(f'{k} {v.shape[1:]}' for k, v in features.items())}")
    text = "\n".join([header, results_table(results), "", seed_style_report(results)]) + "\n"
    atomic_write_text(output, text)
    print(text, end="")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate Ascend 310 / MINDIR features; write acc.log.")
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="the config of the exported model (evaluator, TEST.* options)")
    parser.add_argument("--preprocess-dir", required=True,
                        help="--output-dir of preprocess.py (query_list.txt, gallery_list.txt)")
    parser.add_argument("--result-dir", required=True,
                        help="folder holding query/ and gallery/ feature files")
    parser.add_argument("--output", default="acc.log", help="report file (default acc.log)")
    parser.add_argument("--feature-names", default="",
                        help="comma-separated names of outputs 0..K-1 (default: global,local)")
    parser.add_argument("opts", default=None, nargs="*",
                        help="config overrides, e.g. TEST.RERANK.ENABLED True")
    return parser


def main(argv=None):
    # Options may come before or after the KEY VALUE overrides.
    args = build_parser().parse_intermixed_args(argv)
    from fastreid_ms.engine.defaults import setup_cfg
    from fastreid_ms.utils.logger import setup_logger
    cfg = setup_cfg(args)
    setup_logger(None)
    names = [n.strip() for n in args.feature_names.split(",") if n.strip()] or None
    return postprocess(cfg, args.preprocess_dir, args.result_dir, args.output, names)


if __name__ == "__main__":
    from fastreid_ms.utils.cli import run_cli
    sys.exit(run_cli(main, "postprocess.py"))
