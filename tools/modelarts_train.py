#!/usr/bin/env python
"""Train (or evaluate) on Huawei ModelArts: OBS in, tools/train_net.py, OBS out.

ModelArts starts this file with its web-page hyperparameters as ``--name=value`` flags:

    --data_url     OBS folder holding the dataset folder (the parent of market1501/ ...)
    --train_url    OBS folder that receives OUTPUT_DIR (checkpoints, log.txt, metrics.json)
    --pre_trained  OBS folder (or file) of the ImageNet backbone checkpoint
    --config-file  config, relative to the code folder [configs/Market1501/alignedpp_R50.yml]
    --eval-only with --checkpoint_url (folder or file) [--ckpt_name x.ckpt] to evaluate

Data and weights are copied with ``moxing.file.copy_parallel`` to the local cache
(--cache_dir, /cache on ModelArts) by the first process of each machine, the others
wait for it; training runs ``tools/train_net.py`` with DATASETS.ROOT, the pretrained
path and OUTPUT_DIR pointing into the cache (extra ``KEY VALUE`` pairs, or ``--opts "KEY
VALUE ..."``, are further overrides); rank 0 then copies OUTPUT_DIR to --train_url, also
when training failed, so that its log reaches OBS. Multi-device jobs are detected as in
train_net.py (ModelArts' rank table or msrun). Without the moxing package (outside
ModelArts) it stops with a message and exit code 2.
"""
import argparse
import importlib.util
import json
import os
import shlex
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import fastreid_ms  # noqa: E402,F401  (CPU kernel choice before MindSpore starts)
from fastreid_ms.utils.file_io import atomic_write_text  # noqa: E402

EXIT_USER_ERROR = 2
CHECKPOINT_SUFFIXES = (".ckpt", ".npz", ".safetensors")
COPY_DONE_MARKER = ".fastreid_ms_inputs_ready"
DEFAULT_CONFIG = "configs/Market1501/alignedpp_R50.yml"


class ModelArtsError(RuntimeError):
    """A ModelArts input is missing or ambiguous; the message says which and what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_url", required=True, help="OBS folder holding the dataset folder")
    parser.add_argument("--train_url", required=True, help="OBS folder for OUTPUT_DIR")
    parser.add_argument("--pre_trained", default="",
                        help="OBS folder or file of the ImageNet backbone checkpoint")
    parser.add_argument("--pre_trained_name", default="",
                        help="file name inside --pre_trained when the folder holds several")
    parser.add_argument("--config-file", "--config_file", dest="config_file",
                        default=DEFAULT_CONFIG, help="config, relative to the code folder")
    parser.add_argument("--eval-only", "--eval_only", dest="eval_only", action="store_true",
                        help="evaluate --checkpoint_url instead of training")
    parser.add_argument("--checkpoint_url", default="",
                        help="OBS folder or file of the model to evaluate (--eval-only)")
    parser.add_argument("--ckpt_name", "--modelarts_ckpt_name", dest="ckpt_name", default="",
                        help="checkpoint file name inside --checkpoint_url")
    parser.add_argument("--device", default="Ascend", help="CPU, GPU or Ascend [Ascend]")
    parser.add_argument("--cache_dir", default="/cache", help="local copy of the inputs [/cache]")
    parser.add_argument("--opts", default="", help='overrides as one string: "KEY VALUE ..."')
    parser.add_argument("--run_modelarts", default="True",
                        help="accepted for the model-zoo scripts' web settings; ignored")
    parser.add_argument("--copy_timeout", type=float, default=3600.0,
                        help="seconds the other processes wait for the input copy [3600]")
    return parser


def parse_args(argv):
    """(args, overrides): unknown ``--flag=value`` settings are reported and ignored,
    other leftovers are KEY VALUE config overrides."""
    args, rest = build_parser().parse_known_args(argv)
    ignored = [a for a in rest if a.startswith("--")]
    if ignored:
        print(f"modelarts_train.py: ignoring settings this tool does not know: {ignored}",
              file=sys.stderr, flush=True)
    overrides = shlex.split(args.opts) + [a for a in rest if not a.startswith("--")]
    if len(overrides) % 2:
        raise ModelArtsError(f"Config overrides come in KEY VALUE pairs, got {overrides}.")
    return args, overrides


def import_moxing():
    """The ``moxing`` module, or ModelArtsError saying where it exists."""
    try:
        import moxing
    except ImportError as exc:
        raise ModelArtsError(
            "moxing (ModelArts' OBS client) is not importable, so the OBS paths --data_url / "
            "--train_url cannot be copied. This entry is for ModelArts training jobs, whose "
            "images ship moxing; elsewhere run tools/train_net.py with local paths "
            f"(DATASETS.ROOT, MODEL.BACKBONE.PRETRAIN_PATH, OUTPUT_DIR). ({exc})") from None
    return moxing


def _join_url(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def copy_in(mox, url: str, local_dir: str, name: str = "") -> str:
    """Copy the OBS folder or file ``url`` under ``local_dir``; the local path.

    For a folder, ``name`` picks the file to return (or "" for the folder itself).
    """
    os.makedirs(local_dir, exist_ok=True)
    if mox.file.is_directory(url):
        mox.file.copy_parallel(url, local_dir)
        return os.path.join(local_dir, name) if name else local_dir
    if not mox.file.exists(url):
        raise ModelArtsError(f"OBS path {url} does not exist: check the job's settings.")
    local = os.path.join(local_dir, os.path.basename(url.rstrip("/")))
    mox.file.copy(url, local)
    return local


def pick_checkpoint(path: str, name: str, what: str) -> str:
    """``path`` if it is a file; else the one checkpoint in the folder (or ``name`` in it)."""
    if os.path.isfile(path):
        return path
    if name:
        candidate = os.path.join(path, name)
        if not os.path.isfile(candidate):
            raise ModelArtsError(f"{what}: {name} is not in the copied folder ({sorted(os.listdir(path))}).")
        return candidate
    found = sorted(f for f in os.listdir(path) if f.endswith(CHECKPOINT_SUFFIXES))
    if len(found) != 1:
        raise ModelArtsError(
            f"{what}: the folder holds {len(found)} checkpoint files {found}; name the one to "
            "use (--pre_trained_name / --ckpt_name) or point the URL at the file.")
    return os.path.join(path, found[0])


def _local_rank() -> int:
    value = os.environ.get("DEVICE_ID", "") or os.environ.get("RANK_ID", "") or "0"
    return int(value)


def _sources(args) -> dict:
    return {"data_url": args.data_url, "pre_trained": args.pre_trained,
            "pre_trained_name": args.pre_trained_name, "checkpoint_url": args.checkpoint_url,
            "ckpt_name": args.ckpt_name}


def _read_marker(marker: str, sources: dict):
    """The local paths the marker records for ``sources``, or None (absent, or left by a
    job with other inputs)."""
    try:
        with open(marker, "r", encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record.get("paths") if record.get("sources") == sources else None


def prepare_inputs(mox, args, copier: bool):
    """Copy data / weights in (``copier``) or wait for the machine's copier; local paths.

    The copier records the local paths with their OBS sources in ``COPY_DONE_MARKER``
    (written atomically when the copy is complete); the others wait for a record of the
    same sources.
    """
    cache = os.path.abspath(args.cache_dir)
    marker = os.path.join(cache, COPY_DONE_MARKER)
    sources = _sources(args)
    if copier:
        if os.path.exists(marker):
            os.remove(marker)
        paths = {"data": os.path.join(cache, "data"), "pretrained": "", "weights": ""}
        copy_in(mox, args.data_url, paths["data"])
        if args.pre_trained:
            got = copy_in(mox, args.pre_trained, os.path.join(cache, "pretrained"))
            paths["pretrained"] = pick_checkpoint(got, args.pre_trained_name, "--pre_trained")
        if args.checkpoint_url:
            got = copy_in(mox, args.checkpoint_url, os.path.join(cache, "checkpoint"))
            paths["weights"] = pick_checkpoint(got, args.ckpt_name, "--checkpoint_url")
        atomic_write_text(marker, json.dumps({"sources": sources, "paths": paths}))
        return paths
    deadline = time.monotonic() + args.copy_timeout
    while True:
        paths = _read_marker(marker, sources)
        if paths is not None:
            return paths
        if time.monotonic() > deadline:
            raise ModelArtsError(
                f"waited {args.copy_timeout:.0f} s for the first process of this machine to "
                f"copy the inputs ({marker} never recorded them): see device 0's log.")
        time.sleep(2.0)


def train_net_argv(args, paths, overrides, output_dir: str):
    """The command line of tools/train_net.py for this job."""
    argv = ["--config-file", os.path.join(REPO_ROOT, args.config_file)
            if not os.path.isabs(args.config_file) else args.config_file]
    if args.eval_only:
        if not paths["weights"]:
            raise ModelArtsError("--eval-only needs --checkpoint_url (the model to evaluate).")
        argv.append("--eval-only")
    argv += ["DATASETS.ROOT", paths["data"], "MODEL.DEVICE", args.device,
             "OUTPUT_DIR", output_dir]
    if paths["pretrained"] and not args.eval_only:
        argv += ["MODEL.BACKBONE.PRETRAIN", "True",
                 "MODEL.BACKBONE.PRETRAIN_PATH", paths["pretrained"]]
    if paths["weights"]:
        argv += ["MODEL.WEIGHTS", paths["weights"]]
    return argv + list(overrides)


def load_train_net():
    """tools/train_net.py as a module (tools/ is not a package)."""
    path = os.path.join(REPO_ROOT, "tools", "train_net.py")
    spec = importlib.util.spec_from_file_location("fastreid_ms_train_net", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None, run_training=None) -> int:
    """Copy in, run ``run_training(train_net_argv) -> exit code`` (train_net.run by
    default), copy OUTPUT_DIR out on rank 0; the exit code."""
    from fastreid_ms.engine import launch
    from fastreid_ms.utils import comm

    try:
        args, overrides = parse_args(argv)
        mox = import_moxing()
        output_dir = os.path.join(os.path.abspath(args.cache_dir), "output")
        # msrun's scheduler process (it serves the cluster inside train_net's init) waits
        # for the copy like every process but the first of each machine.
        copier = _local_rank() == 0 and not launch.is_scheduler()
        paths = prepare_inputs(mox, args, copier=copier)
        cmd = train_net_argv(args, paths, overrides, output_dir)
    except ModelArtsError as exc:
        print(f"\nmodelarts_train.py: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR

    if run_training is None:
        run_training = load_train_net().run
    print("modelarts_train.py: tools/train_net.py " + shlex.join(cmd), flush=True)
    code = 1
    try:
        code = int(run_training(cmd) or 0)
    finally:
        if comm.is_main_process() and os.path.isdir(output_dir):
            print(f"modelarts_train.py: copying {output_dir} to {args.train_url}", flush=True)
            mox.file.copy_parallel(output_dir, args.train_url)
    return code


if __name__ == "__main__":
    sys.exit(main())
