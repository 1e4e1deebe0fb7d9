"""DefaultTrainer: loaders, model, optimizer and schedule from the config; epochs of the
compiled train step; logs, metrics.json, evaluation and checkpoints.

A project changes one piece by overriding a classmethod (``build_model``,
``build_optimizer``, ``build_train_loader``, ``build_test_loader``, ``build_evaluator``)::

    class MyTrainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, num_query, output_dir=None):
            return MyEvaluator(cfg, num_query)

Epochs and checkpoint names count from 1: ``model_0003.ckpt`` holds the state after the
third epoch; metrics.json records carry that epoch number.
"""
import datetime
import logging
import time
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import mindspore as ms
from mindspore import nn

from ..utils import comm
from ..utils.checkpoint import Checkpointer
from ..utils.env import resolve_device
from ..utils.events import append_metrics
from .recipe import log_recipe
from .train_step import (NonFiniteLossError, TrainStep, apply_amp, build_loss_scaler,
                         check_losses_finite, losses_to_floats, resolve_amp_level)

logger = logging.getLogger("fastreid_ms")


def reid_score(results: Dict) -> float:
    """(Rank-1 + mAP) / 2 of one evaluation (percent); the model_best.ckpt criterion."""
    return (float(results["Rank-1"]) + float(results["mAP"])) / 2.0


def _fmt_time(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class _PeriodStats:
    """Running sums of the per-iteration figures between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.count = 0
        self.losses: Dict[str, float] = OrderedDict()
        self.iter_time = 0.0
        self.data_time = 0.0
        self.skipped = 0
        self.timed_count = 0
        self.timed_time = 0.0

    def add(self, losses: Dict[str, float], iter_time: float, data_time: float, finite: bool,
            compiled: bool = True):
        """``compiled`` False for a step that included graph compilation (left out of images/s)."""
        self.count += 1
        for name, value in losses.items():
            self.losses[name] = self.losses.get(name, 0.0) + value
        self.iter_time += iter_time
        self.data_time += data_time
        self.skipped += 0 if finite else 1
        if compiled:
            self.timed_count += 1
            self.timed_time += iter_time

    def images_per_s(self, batch: int) -> float:
        if self.timed_count:
            return batch * self.timed_count / max(self.timed_time, 1e-9)
        return batch * self.count / max(self.iter_time, 1e-9)

    def means(self) -> Dict[str, float]:
        return OrderedDict((k, v / self.count) for k, v in self.losses.items())


class DefaultTrainer:
    """Train ``cfg``'s model on DATASETS.NAMES and evaluate it on DATASETS.TESTS.

    ``trainer = DefaultTrainer(cfg); trainer.resume_or_load(resume); trainer.train()``.
    Only rank 0 writes checkpoints, metrics.json and evaluates.
    """

    def __init__(self, cfg):
        from ..modeling.backbones.pretrained import check_pretrained_weights
        self.device = resolve_device(cfg.MODEL.DEVICE)
        self.rank = comm.get_rank()
        self.world_size = comm.get_world_size()
        self.is_main = self.rank == 0
        # A missing ImageNet file stops the run before any data or model is built.
        check_pretrained_weights(cfg)

        self.train_loader = self.build_train_loader(cfg)
        cfg = self.auto_num_classes(cfg, int(self.train_loader.num_classes))
        self.cfg = cfg
        self.iters_per_epoch = int(self.train_loader.iters_per_epoch)
        self.max_epoch = int(cfg.SOLVER.MAX_EPOCH)
        log_recipe(logger, cfg, int(self.train_loader.num_classes), self.world_size,
                   self.iters_per_epoch)

        model = self.build_model(cfg)
        self.load_pretrained(cfg, model)
        self.amp_level, reason = resolve_amp_level(cfg.SOLVER.AMP.LEVEL, self.device)
        logger.info("Mixed precision: %s", reason)
        self.model = apply_amp(model, self.amp_level)
        self.optimizer = self.build_optimizer(cfg, self.model, self.iters_per_epoch)
        self.loss_scaler = build_loss_scaler(self.amp_level, cfg.SOLVER.AMP)
        self.grad_reducer = self.build_grad_reducer(self.optimizer)
        self.mode = str(cfg.MODEL.MODE).upper()
        self.train_step = TrainStep(self.model, self.optimizer, self.loss_scaler,
                                    grad_reducer=self.grad_reducer, jit=self.mode == "GRAPH")
        self.checkpointer = Checkpointer(self.model, cfg.OUTPUT_DIR, optimizer=self.optimizer,
                                         loss_scaler=self.loss_scaler, save_to_disk=self.is_main)
        self.start_epoch = 0
        self.iteration = 0
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.last_results: Optional[Dict] = None
        self._test_loaders: Dict = {}
        logger.info("Training %d epochs x %d iterations (global batch %d on %d device(s)), "
                    "%s mode, AMP %s", self.max_epoch, self.iters_per_epoch,
                    cfg.SOLVER.IMS_PER_BATCH, self.world_size, self.mode, self.amp_level)

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_train_loader(cls, cfg):
        from ..data import build_reid_train_loader
        return build_reid_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        """(loader, num_query) of one DATASETS.TESTS entry."""
        from ..data import build_reid_test_loader
        return build_reid_test_loader(cfg, dataset_name)

    @classmethod
    def build_model(cls, cfg) -> nn.Cell:
        from ..modeling import build_model
        model = build_model(cfg)
        n_params = sum(int(np.prod(p.shape)) for p in model.trainable_params())
        logger.info("Model %s: %.2f M trainable parameters", cfg.MODEL.META_ARCHITECTURE,
                    n_params / 1e6)
        return model

    @classmethod
    def load_pretrained(cls, cfg, model: nn.Cell) -> None:
        """The ImageNet start: MODEL.BACKBONE.PRETRAIN_PATH into ``model.backbone`` when
        MODEL.BACKBONE.PRETRAIN is on (a resumed run replaces these weights)."""
        from ..modeling.backbones.pretrained import load_pretrained_backbone
        if load_pretrained_backbone(model, cfg) is None:
            logger.info("Backbone from random initial weights (MODEL.BACKBONE.PRETRAIN False)")

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Cell, iters_per_epoch: int) -> nn.Optimizer:
        from ..solver import build_optimizer
        return build_optimizer(cfg, model, iters_per_epoch)

    @classmethod
    def build_evaluator(cls, cfg, num_query: int, output_dir: Optional[str] = None):
        from ..evaluation import build_evaluator
        return build_evaluator(cfg, num_query, output_dir)

    def build_grad_reducer(self, optimizer: nn.Optimizer):
        """Gradient all-reduce (mean) for data parallel; None on one device.

        Needs ``mindspore.communication.init()`` to have run (msrun launch) and the data
        parallel context set; the reducer averages the gradients inside the compiled step.
        """
        if self.world_size <= 1:
            return None
        return nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=self.world_size)

    @staticmethod
    def auto_num_classes(cfg, num_classes: int):
        """A copy of ``cfg`` with MODEL.HEADS.NUM_CLASSES set to the training set's identities."""
        current = int(cfg.MODEL.HEADS.NUM_CLASSES)
        if current not in (0, num_classes):
            logger.warning("MODEL.HEADS.NUM_CLASSES %d replaced by the %d identities of the "
                           "training set", current, num_classes)
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.HEADS.NUM_CLASSES = num_classes
        cfg.freeze()
        logger.info("MODEL.HEADS.NUM_CLASSES = %d (identities in %s)", num_classes,
                    ", ".join(cfg.DATASETS.NAMES))
        return cfg

    # ------------------------------------------------------------------ state
    def resume_or_load(self, resume: bool = True) -> None:
        """``resume``: continue from OUTPUT_DIR/last_checkpoint when there is one (epoch,
        iteration, optimizer state and learning-rate position, loss scale, RNG state);
        otherwise load MODEL.WEIGHTS (when set) for fine-tuning."""
        meta = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if not meta:
            return
        self.start_epoch = int(meta.get("epoch", 0))
        self.iteration = int(meta.get("iteration", self.start_epoch * self.iters_per_epoch))
        self.best_score = meta.get("best_score")
        self.best_epoch = meta.get("best_epoch")
        step = int(self.optimizer.global_step.asnumpy().reshape(-1)[0])
        if step != self.iteration:
            logger.warning("Optimizer step %d differs from the checkpoint's iteration %d",
                           step, self.iteration)
        logger.info("Resumed after epoch %d (iteration %d, learning-rate position %d)",
                    self.start_epoch, self.iteration, step)

    def _meta(self, epoch: int) -> Dict:
        return {"epoch": epoch, "iteration": self.iteration, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "amp_level": self.amp_level,
                "world_size": self.world_size}

    # ------------------------------------------------------------------ training
    def current_lr(self) -> float:
        """Learning rate of the first parameter group at the last step taken."""
        lr = self.optimizer.learning_rate
        if isinstance(lr, (list, tuple, nn.CellList)):
            lr = lr[0]
        step = max(int(self.optimizer.global_step.asnumpy().reshape(-1)[0]) - 1, 0)
        if isinstance(lr, nn.Cell):
            return float(lr(ms.Tensor(np.array([step], np.int32))).asnumpy())
        return float(np.asarray(lr.asnumpy()).reshape(-1)[min(step, lr.size - 1)])

    def train(self) -> Optional[Dict]:
        """Run the remaining epochs; returns the last evaluation results (rank 0)."""
        if self.start_epoch >= self.max_epoch:
            logger.info("Training already finished (%d epochs); nothing to do", self.max_epoch)
            return self.last_results
        logger.info("Starting training from epoch %d", self.start_epoch + 1)
        self._train_start = time.perf_counter()
        self._iters_timed, self._time_spent, self._step_compiled = 0, 0.0, False
        for epoch in range(self.start_epoch, self.max_epoch):
            self.run_epoch(epoch)
            self.after_epoch(epoch + 1)
        logger.info("Training finished: %d epochs in %s", self.max_epoch,
                    _fmt_time(time.perf_counter() - self._train_start))
        if self.last_results is not None and self.is_main:
            from ..evaluation import results_table
            if self.best_epoch is not None and self.best_epoch != self.max_epoch:
                logger.info("model_best.ckpt (epoch %s) was chosen on the test set, so its "
                            "results are optimistic; the final model's are below.",
                            self.best_epoch)
            logger.info("Final evaluation (epoch %d, model_final.ckpt):\n%s", self.max_epoch,
                        results_table(self.last_results))
        return self.last_results

    def run_epoch(self, epoch: int) -> None:
        """One pass of the train loader (epoch is 0-based here)."""
        cfg = self.cfg
        self.train_loader.set_epoch(epoch)
        self.model.set_train(True)
        stats = _PeriodStats()
        total_iters = self.max_epoch * self.iters_per_epoch
        log_period = max(int(cfg.SOLVER.LOG_PERIOD), 1)
        end = time.perf_counter()
        for i, (images, pids, _camids) in enumerate(self.train_loader):
            data_time = time.perf_counter() - end
            losses, finite, scale = self.train_step(images, pids)
            values = losses_to_floats(losses)  # waits for the step
            self.iteration += 1
            try:
                check_losses_finite(values, self.iteration, epoch + 1,
                                    self.checkpointer.get_checkpoint_file())
            except NonFiniteLossError as exc:
                if self.is_main and cfg.OUTPUT_DIR:
                    append_metrics(cfg.OUTPUT_DIR, {"epoch": epoch + 1, "iteration": self.iteration,
                                                    **values, "error": str(exc)})
                raise
            iter_time = time.perf_counter() - end
            finite = bool(np.asarray(finite.asnumpy()))
            stats.add(values, iter_time, data_time, finite, compiled=self._step_compiled)
            if self._step_compiled:  # the first step of a process includes graph compilation
                self._iters_timed += 1
                self._time_spent += iter_time
            self._step_compiled = True
            last_of_epoch = i + 1 == self.iters_per_epoch
            if self.iteration % log_period == 0 or last_of_epoch:
                self._log_period(stats, epoch, i + 1, float(np.asarray(scale.asnumpy())),
                                 total_iters)
                stats.reset()
            end = time.perf_counter()

    def _log_period(self, stats: _PeriodStats, epoch: int, it_in_epoch: int, scale: float,
                    total_iters: int) -> None:
        means = stats.means()
        total = sum(means.values())
        lr = self.current_lr()
        per_iter = (self._time_spent / self._iters_timed if self._iters_timed
                    else stats.iter_time / stats.count)
        images_per_s = stats.images_per_s(int(self.cfg.SOLVER.IMS_PER_BATCH))
        data_time = stats.data_time / stats.count
        eta = per_iter * (total_iters - self.iteration)
        terms = "  ".join(f"{k}: {v:.4f}" for k, v in means.items())
        logger.info("epoch %d/%d  iter %d/%d  %s  total_loss: %.4f  lr: %.3e  images/s: %.1f  "
                    "data_time: %.3fs  loss_scale: %g%s  ETA: %s", epoch + 1, self.max_epoch,
                    it_in_epoch, self.iters_per_epoch, terms, total, lr, images_per_s, data_time,
                    scale, f"  skipped_updates: {stats.skipped}" if stats.skipped else "",
                    _fmt_time(eta))
        if self.is_main and self.cfg.OUTPUT_DIR:
            record = {"epoch": epoch + 1, "iteration": self.iteration, **means,
                      "total_loss": total, "lr": lr, "images_per_s": images_per_s,
                      "data_time": data_time, "loss_scale": scale, "skipped_updates": stats.skipped}
            append_metrics(self.cfg.OUTPUT_DIR, record)

    def after_epoch(self, epoch: int) -> None:
        """Evaluation and checkpoints after ``epoch`` (1-based) epochs."""
        cfg = self.cfg
        last = epoch == self.max_epoch
        eval_period = int(cfg.TEST.EVAL_PERIOD)
        if last or (eval_period > 0 and epoch % eval_period == 0):
            self.evaluate(epoch)
        ckpt_period = int(cfg.SOLVER.CHECKPOINT_PERIOD)
        if not last and ckpt_period > 0 and epoch % ckpt_period == 0:
            self.checkpointer.save(f"model_{epoch:04d}", **self._meta(epoch))
        if last:
            self.checkpointer.save("model_final", **self._meta(epoch))

    def evaluate(self, epoch: int) -> Optional[Dict]:
        """Evaluate on DATASETS.TESTS (rank 0), log the table, append the results to
        metrics.json and save model_best.ckpt when (Rank-1 + mAP) / 2 improves."""
        if not self.is_main:
            return None
        results = self.test(self.cfg, self.model, loaders=self._test_loaders)
        self.model.set_train(True)
        self.last_results = results
        scores = [reid_score(r) for r in results.values()]
        score = float(np.mean(scores))
        for name, res in results.items():
            if self.cfg.OUTPUT_DIR:
                append_metrics(self.cfg.OUTPUT_DIR, {"epoch": epoch, "iteration": self.iteration,
                                                     "dataset": name, **res})
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.checkpointer.save("model_best", tag_last=False, **self._meta(epoch))
            logger.info("New best (Rank-1 + mAP) / 2 = %.2f at epoch %d: model_best.ckpt, chosen "
                        "on the test set (report model_final.ckpt's results)", score, epoch)
        else:
            logger.info("(Rank-1 + mAP) / 2 = %.2f; best %.2f at epoch %s", score,
                        self.best_score, self.best_epoch)
        return results

    # ------------------------------------------------------------------ testing
    @classmethod
    def test(cls, cfg, model: nn.Cell, loaders: Optional[Dict] = None) -> "OrderedDict[str, Dict]":
        """Evaluate ``model`` on every DATASETS.TESTS entry; {dataset: results} (percent).

        ``loaders``: a dict that caches ``(loader, num_query)`` per dataset between calls.
        """
        from ..evaluation import inference_on_dataset, results_table
        all_results = OrderedDict()
        loaders = {} if loaders is None else loaders
        for name in cfg.DATASETS.TESTS:
            if name not in loaders:
                loaders[name] = cls.build_test_loader(cfg, name)
            loader, num_query = loaders[name]
            evaluator = cls.build_evaluator(cfg, num_query, cfg.OUTPUT_DIR or None)
            logger.info("Evaluating on %s (%d queries, %d gallery images)", name, num_query,
                        loader.num_samples - num_query)
            results = inference_on_dataset(model, loader, evaluator,
                                           flip=bool(cfg.TEST.FLIP.ENABLED))
            logger.info("Evaluation results on %s:\n%s", name, results_table(results, name=name))
            all_results[name] = results
        return all_results


__all__ = ["DefaultTrainer", "NonFiniteLossError", "reid_score"]
