"""Checkpoints: model weights, optimizer state, loss scale, progress and RNG state in one
MindSpore ``.ckpt`` file, written atomically.

Layout of a file written by :class:`Checkpointer`:

* model parameters under their own names (``backbone.conv1.weight``, ...), so the file
  also loads with plain ``mindspore.load_checkpoint`` / ``load_param_into_net``;
* optimizer state under ``optimizer.<name>`` (``optimizer.global_step`` is the
  learning-rate position, ``optimizer.moments.*`` the momentum buffers, ...);
* the dynamic loss scaler under ``loss_scaler.scale_value`` / ``loss_scaler.counter``;
* ``fastreid_ms_meta``: a JSON string with epoch, iteration, best score, the backbone's
  numerical convention (MODEL.BACKBONE.CONVENTION) and the Python, NumPy and MindSpore RNG
  states (no pickle anywhere).

A save writes a temporary file in the same folder and renames it onto the final name,
so a crash or a kill during the write leaves the previous file intact; the
``last_checkpoint`` file (the name of the newest checkpoint to resume from) is replaced
the same way, after the checkpoint itself.
"""
import json
import logging
import os
import random
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import mindspore as ms
from mindspore import nn

from .file_io import atomic_path, atomic_write_text

META_KEY = "fastreid_ms_meta"
OPT_PREFIX = "optimizer."
SCALER_PREFIX = "loss_scaler."
LAST_CHECKPOINT = "last_checkpoint"
FORMAT_VERSION = 1

# Test hook: "N" pauses the N-th save of this process (counting from 1) after the temporary
# file is written and before it is renamed, printing PAUSE_MESSAGE, so that a test can kill
# the process in the middle of a checkpoint write.
PAUSE_ENV = "FASTREID_TEST_CKPT_PAUSE"
PAUSE_MESSAGE = "TEST HOOK: checkpoint write paused"

logger = logging.getLogger("fastreid_ms")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the model / optimizer."""


def is_classifier_param(name: str) -> bool:
    """Parameters of the identity classifier, whose size depends on the training set."""
    return name.startswith("heads.") and ("classifier" in name or ".cls" in name)


def backbone_convention(model: nn.Cell) -> Optional[str]:
    """MODEL.BACKBONE.CONVENTION of ``model.backbone`` (None for a backbone without one)."""
    return getattr(getattr(model, "backbone", None), "convention", None)


def warn_convention_mismatch(model: nn.Cell, meta: Dict, path: str) -> None:
    """Warn when ``path`` was trained with other backbone numerics than ``model`` has.

    Checkpoints written before the key existed (format 1 without "backbone_convention")
    were all trained with torchvision's padding and BN eps.
    """
    ours = backbone_convention(model)
    if ours is None or not meta:
        return
    theirs = meta.get("backbone_convention", "torchvision")
    if theirs != ours:
        logger.warning(
            "%s was trained with MODEL.BACKBONE.CONVENTION %s but the model is built with %s "
            "(padding and BN eps differ): set MODEL.BACKBONE.CONVENTION %s to get the features "
            "it was trained to give.", path, theirs, ours, theirs)


# --- RNG state as JSON ------------------------------------------------------------------

def get_rng_state() -> Dict:
    """Python, NumPy and MindSpore RNG states as JSON-serialisable values."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, np.asarray(np_keys).tolist(), int(np_pos), int(np_has_gauss),
                  float(np_cached)],
    }
    try:
        state["mindspore"] = ms.get_rng_state().asnumpy().astype(np.int64).tolist()
    except (AttributeError, RuntimeError):  # older MindSpore without get_rng_state
        pass
    return state


def set_rng_state(state: Dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    if "python" in state:
        version, values, gauss = state["python"]
        random.setstate((version, tuple(values), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "mindspore" in state and hasattr(ms, "set_rng_state"):
        ms.set_rng_state(ms.Tensor(np.asarray(state["mindspore"], dtype=np.uint8)))


# --- reading ------------------------------------------------------------------------------

def read_checkpoint(path: str):
    """(tensors: {name: Parameter}, meta: dict) of a checkpoint file; clear errors otherwise."""
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file not found: {path}. Check MODEL.WEIGHTS / the path "
                              "given, or the 'last_checkpoint' file in OUTPUT_DIR.")
    try:
        raw = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError / RuntimeError for bad files
        raise CheckpointError(
            f"{path} is not a readable MindSpore checkpoint (.ckpt): {exc}. Give the path of a "
            ".ckpt file written by fastreid_ms or mindspore.save_checkpoint.") from exc
    meta = {}
    tensors = {}
    for name, value in raw.items():
        if name == META_KEY:
            meta = json.loads(value)
        elif isinstance(value, str):
            continue
        else:
            tensors[name] = value
    return tensors, meta


def _short_list(items: List[str], limit: int = 20) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; ... ({len(items) - limit} more)" if len(items) > limit else "")


def load_model_weights(model: nn.Cell, tensors: Dict, path: str, skip_classifier: bool = True) -> None:
    """Copy ``tensors`` into ``model``'s parameters.

    A classifier whose size differs from the checkpoint's (another training set) is
    skipped with one log line when ``skip_classifier``. Any other parameter the
    checkpoint lacks or holds with another shape raises :class:`CheckpointError`
    listing them; checkpoint entries the model does not have are logged and ignored.
    """
    model_params = model.parameters_dict()
    mismatched, missing, skipped = [], [], []
    loadable = {}
    for name, param in model_params.items():
        src = tensors.get(name)
        if src is None:
            if skip_classifier and is_classifier_param(name):
                skipped.append(f"{name} (absent)")
            else:
                missing.append(name)
            continue
        if tuple(src.shape) != tuple(param.shape):
            if skip_classifier and is_classifier_param(name):
                skipped.append(f"{name} {tuple(src.shape)} -> {tuple(param.shape)}")
            else:
                mismatched.append(f"{name}: checkpoint {tuple(src.shape)} vs model {tuple(param.shape)}")
            continue
        loadable[name] = src
    if mismatched or missing:
        parts = []
        if mismatched:
            parts.append(f"shape mismatch for {len(mismatched)} parameter(s): {_short_list(mismatched)}")
        if missing:
            parts.append(f"{len(missing)} model parameter(s) absent from the checkpoint: "
                         f"{_short_list(missing)}")
        raise CheckpointError(
            f"Checkpoint {path} does not fit the model: " + "; and ".join(parts) + ". Check that "
            "the config (MODEL.BACKBONE.DEPTH, MODEL.HEADS.*, PLUGINS) matches the one the "
            "checkpoint was trained with.")
    unexpected = sorted(set(tensors) - set(model_params))
    unexpected = [n for n in unexpected if not n.startswith((OPT_PREFIX, SCALER_PREFIX))]
    if skip_classifier:
        # A model built without a classifier (evaluation, NUM_CLASSES 0) skips the saved one.
        skipped.extend(f"{n} (not in the model)" for n in unexpected if is_classifier_param(n))
        unexpected = [n for n in unexpected if not is_classifier_param(n)]
    for name, src in loadable.items():
        dst = model_params[name]
        dst.set_data(ms.Tensor(src.asnumpy(), dst.dtype))
    if skipped:
        logger.info("Skipped the classifier of another size from %s: %s", path, ", ".join(skipped))
    if unexpected:
        logger.warning("Ignored %d checkpoint entries the model does not have: %s",
                       len(unexpected), _short_list(unexpected))


def _state_params(optimizer: nn.Optimizer, model: nn.Cell) -> Dict:
    """The optimizer's own parameters (moments, step, ...), without the model's weights."""
    model_ids = {id(p) for p in model.get_parameters()}
    model_names = set(model.parameters_dict())
    return {name: p for name, p in optimizer.parameters_dict().items()
            if id(p) not in model_ids and name not in model_names}


class Checkpointer:
    """Save / load model, optimizer, loss scaler, progress and RNG state.

    Args:
        model: the Cell whose parameters are saved.
        save_dir: folder of the checkpoints and of ``last_checkpoint``.
        optimizer: saved and restored on resume (optional).
        loss_scaler: ``mindspore.amp.DynamicLossScaler`` (optional).
        save_to_disk: False on ranks other than 0 (their ``save`` does nothing).
    """

    def __init__(self, model: nn.Cell, save_dir: str = "", optimizer: Optional[nn.Optimizer] = None,
                 loss_scaler=None, save_to_disk: bool = True):
        self.model = model
        self.save_dir = save_dir
        self.optimizer = optimizer
        self.loss_scaler = loss_scaler
        self.save_to_disk = save_to_disk
        self._saves = 0

    # ---- saving
    def _entries(self) -> List[Dict]:
        entries = [{"name": name, "data": p} for name, p in self.model.parameters_dict().items()]
        if self.optimizer is not None:
            for name, p in _state_params(self.optimizer, self.model).items():
                entries.append({"name": OPT_PREFIX + name, "data": p})
        if self.loss_scaler is not None:
            entries.append({"name": SCALER_PREFIX + "scale_value", "data": self.loss_scaler.scale_value})
            entries.append({"name": SCALER_PREFIX + "counter", "data": self.loss_scaler.counter})
        return entries

    def save(self, name: str, tag_last: bool = True, **extra) -> Optional[str]:
        """Write ``save_dir/<name>.ckpt`` atomically with ``extra`` (JSON values) in its meta;
        point ``last_checkpoint`` at it when ``tag_last``. Returns the path (None off rank 0)."""
        if not self.save_to_disk or not self.save_dir:
            return None
        os.makedirs(self.save_dir, exist_ok=True)
        path = os.path.join(self.save_dir, f"{name}.ckpt")
        meta = {"format_version": FORMAT_VERSION, "rng": get_rng_state(), **extra}
        convention = backbone_convention(self.model)
        if convention is not None:
            meta.setdefault("backbone_convention", convention)
        self._saves += 1
        self._remove_stale_temporaries(os.path.basename(path))
        with atomic_path(path) as tmp:
            # MindSpore appends ".ckpt" to names that lack it: write there, then move.
            staging = tmp + ".ckpt"
            try:
                ms.save_checkpoint(self._entries(), staging,
                                   append_dict={META_KEY: json.dumps(meta)})
                os.replace(staging, tmp)
            finally:
                if os.path.exists(staging):
                    os.remove(staging)
            self._maybe_pause(path)
        if tag_last:
            atomic_write_text(os.path.join(self.save_dir, LAST_CHECKPOINT), os.path.basename(path))
        logger.info("Saved checkpoint %s", path)
        return path

    def _remove_stale_temporaries(self, basename: str) -> None:
        """Temporary files of ``basename`` left by a writer that was killed (only this
        process writes into save_dir)."""
        prefix = f".{basename}."
        for entry in os.listdir(self.save_dir):
            if entry.startswith(prefix) and (entry.endswith(".tmp") or entry.endswith(".tmp.ckpt")):
                try:
                    os.remove(os.path.join(self.save_dir, entry))
                except OSError:
                    pass

    def _maybe_pause(self, path: str) -> None:
        target = os.environ.get(PAUSE_ENV, "")
        if target.isdigit() and int(target) == self._saves:
            print(f"{PAUSE_MESSAGE}: {path}", flush=True)
            sys.stdout.flush()
            time.sleep(3600)

    # ---- finding the last checkpoint
    def get_checkpoint_file(self) -> Optional[str]:
        """Path named by ``save_dir/last_checkpoint`` (None when there is none)."""
        tag = os.path.join(self.save_dir, LAST_CHECKPOINT)
        if not self.save_dir or not os.path.isfile(tag):
            return None
        with open(tag, "r", encoding="utf-8") as f:
            name = f.read().strip()
        return os.path.join(self.save_dir, name) if name else None

    def has_checkpoint(self) -> bool:
        path = self.get_checkpoint_file()
        return path is not None and os.path.isfile(path)

    # ---- loading
    def load(self, path: str, resume: bool = False) -> Dict:
        """Load ``path``. ``resume``: also optimizer, loss scale and RNG state, and the model must
        fit exactly; otherwise weights only, skipping a classifier of another size.
        Returns the checkpoint's meta (epoch, iteration, ...; {} for foreign files)."""
        tensors, meta = read_checkpoint(path)
        load_model_weights(self.model, tensors, path, skip_classifier=not resume)
        warn_convention_mismatch(self.model, meta, path)
        if resume:
            if self.optimizer is not None:
                self._load_optimizer(tensors, path)
            if self.loss_scaler is not None:
                self._load_scaler(tensors)
            if "rng" in meta:
                set_rng_state(meta["rng"])
        logger.info("Loaded %s from %s", "training state" if resume else "weights", path)
        return meta

    def _load_optimizer(self, tensors: Dict, path: str) -> None:
        state = _state_params(self.optimizer, self.model)
        saved = {n[len(OPT_PREFIX):]: v for n, v in tensors.items() if n.startswith(OPT_PREFIX)}
        missing = sorted(set(state) - set(saved))
        wrong = [f"{n}: checkpoint {tuple(saved[n].shape)} vs optimizer {tuple(p.shape)}"
                 for n, p in state.items() if n in saved and tuple(saved[n].shape) != tuple(p.shape)]
        if missing or wrong:
            raise CheckpointError(
                f"Optimizer state in {path} does not fit the optimizer "
                f"({type(self.optimizer).__name__}): missing {_short_list(missing) or 'none'}; "
                f"shape mismatch {_short_list(wrong) or 'none'}. Resume with the same SOLVER.OPT "
                "as the run that wrote it, or start a new run with MODEL.WEIGHTS.")
        for name, dst in state.items():
            dst.set_data(ms.Tensor(saved[name].asnumpy(), dst.dtype))

    def _load_scaler(self, tensors: Dict) -> None:
        for attr in ("scale_value", "counter"):
            src = tensors.get(SCALER_PREFIX + attr)
            if src is not None:
                dst = getattr(self.loss_scaler, attr)
                dst.set_data(ms.Tensor(src.asnumpy(), dst.dtype))

    def resume_or_load(self, path: str, resume: bool = True) -> Dict:
        """Resume from ``last_checkpoint`` when ``resume`` and one exists; otherwise load the
        weights of ``path`` when given. Returns the meta of what was loaded ({} if nothing)."""
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file(), resume=True)
        if resume:
            logger.info("No checkpoint to resume from in %s; starting from the beginning",
                        self.save_dir)
        if path:
            self.load(path, resume=False)
        return {}
