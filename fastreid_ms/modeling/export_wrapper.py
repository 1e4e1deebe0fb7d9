"""The inference graph that is exported (MINDIR / AIR / ONNX) and the export itself.

A model in eval mode returns a dict of features, ``{"global": (N, D), "local": (N, P, C)}``.
Exported graphs return a TUPLE instead, in a fixed order: the names of
``EXPORT_FEATURE_ORDER`` that the model produces, in that order, then any other feature
names sorted alphabetically. For AlignedReID++ that is ``(global (N, D), local (N, P, C))``;
for a global-only model ``(global,)``. Output k of the exported file (and file
``<stem>_<k>.bin`` of the Ascend 310 programs) is feature ``names[k]``.
"""
import logging
import os
import shutil
import tempfile
from typing import Optional, Sequence, Tuple

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from ..utils.file_io import default_file_mode

logger = logging.getLogger("fastreid_ms.export")

# Output order of exported graphs: these first (when the model makes them), then the rest sorted.
EXPORT_FEATURE_ORDER = ("global", "local")
EXPORT_FORMATS = ("MINDIR", "AIR", "ONNX")
FORMAT_SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
INPUT_NAME = "images"


def order_feature_names(names: Sequence[str]) -> Tuple[str, ...]:
    """Feature names in export order: EXPORT_FEATURE_ORDER first, then the others sorted."""
    names = list(names)
    known = [n for n in EXPORT_FEATURE_ORDER if n in names]
    return tuple(known + sorted(n for n in names if n not in EXPORT_FEATURE_ORDER))


def probe_feature_names(model: nn.Cell, image_size: Sequence[int]) -> Tuple[str, ...]:
    """Run ``model`` once in eval mode on a (1, 3, H, W) zero image; its feature names in export order.

    Raises TypeError when the model's eval output is not a dict of tensors.
    """
    height, width = int(image_size[0]), int(image_size[1])
    was_training = model.training
    model.set_train(False)
    try:
        out = model(ms.Tensor(np.zeros((1, 3, height, width), np.float32)))
    finally:
        model.set_train(was_training)
    if not isinstance(out, dict) or not out:
        raise TypeError(
            f"{type(model).__name__} returned {type(out).__name__} in eval mode; the export needs "
            "a dict of features such as {'global': (N, D), 'local': (N, P, C)}.")
    return order_feature_names(out.keys())


class InferenceWrapper(nn.Cell):
    """images (N, 3, H, W) float32 -> tuple of the model's eval features, in ``feature_names`` order.

    The wrapped model is put in eval mode; the wrapper only reorders its dict into a tuple,
    so the exported graph computes exactly what ``model(images)`` computes. With
    ``flip_width`` = W, each feature is the mean of those of the images and of their
    horizontal mirror images (TEST.FLIP.ENABLED, as the evaluation does); the mirror is a
    gather with reversed column indices, which every export format supports.
    """

    def __init__(self, model: nn.Cell, feature_names: Sequence[str], flip_width: Optional[int] = None):
        # auto_prefix=False: wrapping must not rename the model's parameters ("model.backbone...").
        super().__init__(auto_prefix=False)
        if not feature_names:
            raise ValueError("feature_names is empty: name at least one feature, e.g. ('global',).")
        self.model = model
        self.feature_names = tuple(feature_names)
        self.flip = flip_width is not None
        if self.flip:
            self.reversed_columns = ms.Tensor(np.arange(int(flip_width))[::-1].copy(), ms.int32)
        self.model.set_train(False)
        self.set_train(False)

    def construct(self, images):
        feats = self.model(images)
        if self.flip:
            mirrored = self.model(ops.gather(images, self.reversed_columns, 3))
            return tuple([(feats[name] + mirrored[name]) * 0.5 for name in self.feature_names])
        return tuple([feats[name] for name in self.feature_names])


def resolve_output_path(output: str, fmt: str) -> str:
    """``output`` with the format's suffix (.mindir / .air / .onnx) appended when missing."""
    suffix = FORMAT_SUFFIX[fmt]
    return output if output.lower().endswith(suffix) else output + suffix


def parse_batch_size(value) -> Optional[int]:
    """'dynamic' / None -> None (dynamic batch); a positive integer (or its string) -> int."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "dynamic"):
        return None
    try:
        batch = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--batch-size must be a positive integer or 'dynamic', got '{value}'.") from None
    if batch < 1:
        raise ValueError(f"--batch-size must be a positive integer or 'dynamic', got {batch}.")
    return batch


def check_format(fmt: str, batch_size: Optional[int]) -> str:
    """Validate the format (case-insensitive) for this device and batch; returns it upper-case."""
    key = str(fmt).strip().upper()
    if key not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format '{fmt}': use one of {', '.join(EXPORT_FORMATS)}.")
    if key == "AIR":
        device = ms.get_context("device_target")
        if device != "Ascend":
            raise RuntimeError(
                f"AIR export needs an Ascend device (this process runs on {device}): export AIR on an "
                "Ascend 910 machine (MODEL.DEVICE Ascend), or export MINDIR, which any device can "
                "write and Ascend 310 runs.")
        if batch_size is None:
            raise ValueError("AIR has no dynamic batch: pass --batch-size N (e.g. 1).")
    return key


def export_inference_model(model: nn.Cell, fmt: str, output: str, image_size: Sequence[int],
                           batch_size: Optional[int] = 1,
                           feature_names: Optional[Sequence[str]] = None,
                           flip: bool = False) -> Tuple[str, Tuple[str, ...]]:
    """Export the eval graph of ``model`` to ``output`` (suffix added when missing), atomically.

    Args:
        model: the meta-architecture (eval output: dict of features).
        fmt: "MINDIR", "AIR" (Ascend only) or "ONNX".
        output: destination file name, with or without the format's suffix.
        image_size: (H, W) of the input images (INPUT.SIZE_TEST).
        batch_size: fixed batch N, or None for a dynamic batch (MINDIR and ONNX).
        feature_names: outputs in order; default: probed from the model (see module docstring).
        flip: average with the features of the mirrored images (TEST.FLIP.ENABLED).

    Returns:
        (path written, feature names of the outputs in order).

    The graph is exported into a temporary folder beside the destination and renamed onto it
    only when complete, so an interrupted export never leaves a truncated file.
    """
    fmt = check_format(fmt, batch_size)
    height, width = int(image_size[0]), int(image_size[1])
    if feature_names is None:
        feature_names = probe_feature_names(model, (height, width))
    net = InferenceWrapper(model, feature_names, flip_width=width if flip else None)
    final_path = os.path.abspath(resolve_output_path(output, fmt))
    folder = os.path.dirname(final_path)
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(final_path)
    stem = base[: -len(FORMAT_SUFFIX[fmt])]
    tmp_dir = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    try:
        tmp_stem = os.path.join(tmp_dir, stem)
        if fmt == "ONNX":
            _export_onnx(net, tmp_stem + ".onnx", height, width, batch_size, feature_names)
        else:
            shape = [batch_size, 3, height, width]
            if batch_size is None:
                spec = ms.Tensor(shape=[None, 3, height, width], dtype=ms.float32)
            else:
                spec = ms.Tensor(np.zeros(shape, np.float32))
            ms.export(net, spec, file_name=tmp_stem, file_format=fmt)
        written = os.path.join(tmp_dir, base)
        if not os.path.isfile(written):
            raise RuntimeError(f"MindSpore did not write {base} in {tmp_dir}; export failed.")
        # Side files (external weights of very large graphs) first, the model file last.
        for name in sorted(os.listdir(tmp_dir)):
            if name != base:
                dest = os.path.join(folder, name)
                if os.path.isdir(dest):
                    shutil.rmtree(dest)
                os.replace(os.path.join(tmp_dir, name), dest)
        os.chmod(written, default_file_mode())  # MindSpore writes exports read-only
        os.replace(written, final_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    batch_txt = "dynamic" if batch_size is None else str(batch_size)
    logger.info("Exported %s (%s, input %s x 3 x %d x %d, outputs %s%s)", final_path, fmt, batch_txt,
                height, width, ", ".join(feature_names), ", flip-averaged" if flip else "")
    return final_path, tuple(feature_names)


def _export_onnx(net, path, height, width, batch_size, feature_names):
    """ms.onnx.export with a named input 'images' and outputs named after the features.

    A dynamic batch compiles the graph on a (None, 3, H, W) input so that the batch axis of the
    outputs is dynamic too; ``dynamic_axes`` marks the input's batch axis.
    """
    names = list(feature_names)
    if batch_size is None:
        spec = ms.Tensor(shape=[None, 3, height, width], dtype=ms.float32)
        axes = {INPUT_NAME: {0: "batch"}}
        axes.update({name: {0: "batch"} for name in names})
    else:
        spec = ms.Tensor(np.zeros((batch_size, 3, height, width), np.float32))
        axes = None
    ms.onnx.export(net, spec, file_name=path, input_names=[INPUT_NAME], output_names=names,
                   dynamic_axes=axes)


def load_inference_weights(model: nn.Cell, path: str) -> dict:
    """Load MODEL.WEIGHTS into ``model`` for inference (export, feature extraction).

    Uses the toolbox's Checkpointer (weights only; a classifier of another size is skipped);
    a missing file or a parameter the checkpoint lacks raises CheckpointError naming it.
    Returns the checkpoint's meta.
    """
    from ..utils.checkpoint import Checkpointer
    if not path:
        raise ValueError("MODEL.WEIGHTS is empty: pass the trained checkpoint, "
                         "e.g. MODEL.WEIGHTS logs/market1501/alignedpp_R50/model_final.ckpt.")
    return Checkpointer(model).load(path, resume=False)
