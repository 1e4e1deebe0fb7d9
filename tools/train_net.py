#!/usr/bin/env python
"""Train a re-ID model, or evaluate one (--eval-only), from a config file.

    python tools/train_net.py --config-file configs/Market1501/alignedpp_R50.yml
    python tools/train_net.py --config-file configs/Market1501/alignedpp_R50.yml --resume
    python tools/train_net.py --config-file configs/Market1501/alignedpp_R50.yml \\
        --eval-only MODEL.WEIGHTS logs/market1501/alignedpp_R50/model_final.ckpt

Errors the user can fix (a missing dataset, a config key or value, a checkpoint that
does not fit) end with one paragraph on stderr and exit code 2; a NaN / infinite loss
ends with exit code 3. Neither prints a traceback.
"""
import logging
import os
import sys

# The repository root, so that projects.* plugins named in configs import.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import fastreid_ms  # noqa: E402,F401  (CPU kernel choice before MindSpore starts)
from fastreid_ms.engine.defaults import default_argument_parser  # noqa: E402

EXIT_USER_ERROR = 2
EXIT_NONFINITE_LOSS = 3


def main(args):
    from fastreid_ms.config import ConfigError
    from fastreid_ms.engine import DefaultTrainer, default_setup, setup_cfg
    from fastreid_ms.engine.launch import check_resume_agrees, setup_distributed
    from fastreid_ms.utils import comm
    from fastreid_ms.utils.checkpoint import Checkpointer

    cfg = setup_cfg(args)
    # Under msrun or an Ascend rank table: check the batch split, then join the job
    # (msrun's scheduler process stays in this call until the workers end).
    cfg = setup_distributed(cfg, eval_only=args.eval_only)
    default_setup(cfg, args)
    if args.eval_only:
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError("--eval-only needs the weights to evaluate: add "
                              "MODEL.WEIGHTS path/to/model_final.ckpt to the command line.")
        if not comm.is_main_process():
            return None  # evaluation runs once, on rank 0
        model = DefaultTrainer.build_model(cfg)
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
        results = DefaultTrainer.test(cfg, model)
        if cfg.OUTPUT_DIR:  # one record per test set, as training writes (read by tools/compare.py)
            from fastreid_ms.utils.events import append_metrics
            for name, res in results.items():
                append_metrics(cfg.OUTPUT_DIR, {"eval_only": True, "weights": cfg.MODEL.WEIGHTS,
                                                "dataset": name, **res})
        return results
    resuming = args.resume and Checkpointer(None, cfg.OUTPUT_DIR).has_checkpoint()
    if resuming and cfg.MODEL.BACKBONE.PRETRAIN:
        # The checkpoint replaces every weight: the ImageNet file is not needed to resume.
        logging.getLogger("fastreid_ms").info(
            "Resuming: the ImageNet weights (MODEL.BACKBONE.PRETRAIN_PATH) are not loaded")
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        cfg.freeze()
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    check_resume_agrees(trainer.start_epoch, cfg.OUTPUT_DIR)
    return trainer.train()


def _user_errors():
    """Exception types whose message is the whole story (no traceback)."""
    from fastreid_ms.config import ConfigError
    from fastreid_ms.data import DatasetLayoutError
    from fastreid_ms.engine.launch import LaunchError
    from fastreid_ms.utils.checkpoint import CheckpointError
    errors = [ConfigError, DatasetLayoutError, CheckpointError, FileNotFoundError, LaunchError]
    try:
        from fastreid_ms.data import ImageReadError
        errors.append(ImageReadError)
    except ImportError:
        pass
    return tuple(errors)


def _report(kind: str, exc: BaseException) -> None:
    import logging
    message = str(exc).strip()  # keep line breaks: layout errors show a folder tree
    logging.getLogger("fastreid_ms").error("%s: %s", kind, message)
    print(f"\ntrain_net.py: {kind}: {message}", file=sys.stderr, flush=True)


def run(argv=None) -> int:
    args = default_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    from fastreid_ms.engine.train_step import NonFiniteLossError
    user_errors = _user_errors()
    try:
        main(args)
    except NonFiniteLossError as exc:
        _report("training stopped", exc)
        return EXIT_NONFINITE_LOSS
    except user_errors as exc:
        _report("error", exc)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(run())
