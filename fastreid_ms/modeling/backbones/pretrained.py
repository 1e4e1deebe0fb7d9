"""ImageNet initialisation of a ResNet backbone from a file on disk (never downloaded).

Accepted files:

* ``.ckpt`` — a MindSpore checkpoint, e.g. the model-zoo ResNet-50 the seed uses
  (``resnet50_ascend_v130_imagenet2012_official_cv_bs256_top1acc76.97__top5acc_93.44.ckpt``):
  names as ours (``conv1.weight``, ``bn1.gamma`` / ``beta`` / ``moving_mean`` /
  ``moving_variance``, ``layer1.0.down_sample_layer.0.weight``, classifier ``end_point.*``).
* ``.npz`` / ``.safetensors`` — a torchvision ResNet state (``bn1.weight`` / ``bias`` /
  ``running_mean`` / ``running_var``, ``layer1.0.downsample.0.weight``, classifier ``fc.*``).
  ``tools/convert_torchvision.py`` turns a torchvision ``.pth`` into our ``.ckpt``.

Each family was trained with its own numerics (see MODEL.BACKBONE.CONVENTION in
``resnet.py``): model-zoo names mean the "modelzoo" convention, torchvision names (or the
``weights_convention`` string that ``tools/convert_torchvision.py`` writes into a ``.ckpt``)
"torchvision". Loading weights into a backbone of the other convention logs a warning.

The trainer loads them when training starts (:func:`load_pretrained_backbone`), after
:func:`check_pretrained_weights` has made sure, before anything is built, that the file is
there; ``build_model`` never reads them.

Names are mapped onto the backbone's own; prefixes such as ``module.``, ``backbone.`` or
``base.`` are stripped. The classifier (``fc``, ``end_point``) is never loaded and optimizer
state stored in a checkpoint (``moments.*``, ``learning_rate``, ...) is ignored. A table of
loaded / missing / unexpected / shape-mismatched parameters is logged. A shape mismatch, or a
file from which no backbone parameter can be matched, raises ``ValueError`` naming the file.
"""
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from tabulate import tabulate

logger = logging.getLogger("fastreid_ms")

# The ImageNet start of the seed (MindSpore model zoo, ResNet-50, top-1 76.97 %).
SEED_IMAGENET_CHECKPOINT = (
    "resnet50_ascend_v130_imagenet2012_official_cv_bs256_top1acc76.97__top5acc_93.44.ckpt")
# A string entry naming the convention the weights were trained with (written by
# tools/convert_torchvision.py; model-zoo checkpoints have none).
CONVENTION_KEY = "weights_convention"

CKPT_EXTS = (".ckpt",)
NPZ_EXTS = (".npz",)
SAFETENSORS_EXTS = (".safetensors",)
TORCH_EXTS = (".pth", ".pt", ".pth.tar", ".bin")

# Leading components some checkpoints wrap the backbone in.
_STRIP_PREFIXES = ("module.", "backbone.", "base.", "network.", "model.", "net.", "encoder.")
# Classifier layers of ImageNet ResNets: never loaded.
_CLASSIFIER_PREFIXES = ("fc.", "end_point.", "classifier.", "head.fc.")
# Training state saved next to the weights in model-zoo checkpoints.
_OPTIMIZER_PATTERN = re.compile(
    r"^(moments\.|accum\.|accumulation\.|adam_[mv]\.|moment[12]\.|learning_rate$|global_step$|"
    r"momentum$|scale_sense$|current_iterator_step$|last_overflow_iterator_step$|epoch_num$|"
    r"step_num$|loss_scale$)")
_BN_SUFFIX = {"running_mean": "moving_mean", "running_var": "moving_variance"}
# Model-zoo ResNet-18/34 blocks name their norms bn1d / bn2d.
_ZOO_ALIASES = ((".bn1d.", ".bn1."), (".bn2d.", ".bn2."))


@dataclass
class LoadReport:
    """What :func:`load_imagenet_weights` did (names are the backbone's own)."""
    path: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, tuple, tuple]] = field(default_factory=list)
    skipped_classifier: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)

    def table(self) -> str:
        """A tabulate table: one row per category with its count and (some) names."""
        def names(items, limit=6):
            items = list(items)
            shown = ", ".join(items[:limit])
            return shown + (f", ... (+{len(items) - limit})" if len(items) > limit else "")
        rows = [
            ["loaded", len(self.loaded), names(self.loaded, 3)],
            ["missing (kept at init)", len(self.missing), names(self.missing)],
            ["unexpected (not used)", len(self.unexpected), names(self.unexpected)],
            ["shape mismatch", len(self.mismatched),
             names(f"{n} {tuple(a)} vs file {tuple(b)}" for n, a, b in self.mismatched)],
            ["classifier (never loaded)", len(self.skipped_classifier),
             names(self.skipped_classifier)],
            ["optimizer state (ignored)", len(self.ignored), names(self.ignored, 3)],
        ]
        return tabulate(rows, headers=["parameters", "count", "names"], tablefmt="github")


def read_weight_file(path: str) -> "OrderedDict[str, np.ndarray]":
    """{name: array} from a .ckpt (MindSpore), .npz or .safetensors file; errors name the path."""
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ImageNet weights not found: {path} (MODEL.BACKBONE.PRETRAIN_PATH). Give the path of "
            "a model-zoo .ckpt or a torchvision ResNet state as .npz / .safetensors; nothing is "
            "downloaded.")
    lower = path.lower()
    if lower.endswith(TORCH_EXTS):
        raise ValueError(
            f"{path} is a PyTorch file, which fastreid_ms does not unpickle. Convert it first: "
            f"python tools/convert_torchvision.py {path} resnet50_torchvision.ckpt "
            "(needs torch), or save the state dict as .npz / .safetensors.")
    try:
        if lower.endswith(CKPT_EXTS):
            return _read_ckpt(path)
        if lower.endswith(NPZ_EXTS):
            with np.load(path, allow_pickle=False) as data:
                return OrderedDict((k, np.asarray(data[k])) for k in data.files)
        if lower.endswith(SAFETENSORS_EXTS):
            from safetensors.numpy import load_file
            return OrderedDict(load_file(path))
    except (FileNotFoundError, ImportError):
        raise
    except Exception as exc:
        raise ValueError(
            f"{path} is not a readable weight file of its kind ({type(exc).__name__}: {exc}). "
            "Check that the file is complete and is a MindSpore .ckpt, a NumPy .npz or a "
            ".safetensors file.") from exc
    raise ValueError(
        f"{path}: unknown weight file type. MODEL.BACKBONE.PRETRAIN_PATH must end in .ckpt "
        "(MindSpore), .npz or .safetensors (torchvision names).")


def _read_ckpt(path: str) -> "OrderedDict[str, np.ndarray]":
    """Tensors as arrays; string entries (e.g. CONVENTION_KEY) as 0-d str arrays."""
    import mindspore as ms
    params = ms.load_checkpoint(path)
    if not params:
        raise ValueError("the checkpoint holds no parameters")
    return OrderedDict((name, np.array(p) if isinstance(p, str) else p.asnumpy())
                       for name, p in params.items())


def weights_convention(file_weights: Dict[str, np.ndarray]) -> str:
    """"modelzoo" or "torchvision": the numerics the file's weights were trained with.

    The file's CONVENTION_KEY entry when it has one; else torchvision when its names are
    torchvision's (``running_mean``, ``downsample``, norm ``weight`` / ``bias``); else the
    model zoo's.
    """
    if CONVENTION_KEY in file_weights:
        return str(np.asarray(file_weights[CONVENTION_KEY]))
    for name in file_weights:
        base = _strip_prefix(name)
        if (base.endswith(("running_mean", "running_var")) or ".downsample." in base
                or re.search(r"(^|\.)bn\d*\.(weight|bias)$", base)):
            return "torchvision"
    return "modelzoo"


CONVENTION_TEXT = {
    "modelzoo": "the model zoo's 'same' padding (stride-2 layers pad 0 before, 1 after) and BN "
                "eps 1e-4",
    "torchvision": "torchvision's symmetric padding and BN eps 1e-5",
}


def _strip_prefix(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                changed = True
    return name


def is_classifier_name(name: str) -> bool:
    """True for the ImageNet classifier (``fc.*``, ``end_point.*``) after prefix stripping."""
    return _strip_prefix(name).startswith(_CLASSIFIER_PREFIXES)


def torchvision_to_ours(name: str, is_norm: Optional[bool] = None) -> str:
    """Rename a torchvision ResNet parameter to the model-zoo / fastreid_ms name.

    ``layerX.Y.downsample.*`` -> ``layerX.Y.down_sample_layer.*``; norm ``weight`` / ``bias``
    -> ``gamma`` / ``beta``; ``running_mean`` / ``running_var`` -> ``moving_mean`` /
    ``moving_variance``; ``fc.*`` -> ``end_point.*``. ``is_norm`` says whether the module is a
    BatchNorm; None guesses from the name (``bn*``, IBN-a's ``IN`` / ``BN``, or ``downsample.1``).
    """
    name = _strip_prefix(name)
    name = name.replace(".downsample.", ".down_sample_layer.")
    if name.startswith("fc."):
        return "end_point." + name[3:]
    module, _, leaf = name.rpartition(".")
    if leaf in _BN_SUFFIX:
        return f"{module}.{_BN_SUFFIX[leaf]}"
    if is_norm is None:
        last = module.rpartition(".")[2]
        # IBN-a blocks (IBN-Net's ImageNet weights) hold their norms as bn1.IN / bn1.BN.
        is_norm = (last.startswith("bn") or last in ("IN", "BN")
                   or module.endswith("down_sample_layer.1"))
    if is_norm and leaf in ("weight", "bias"):
        return f"{module}.{'gamma' if leaf == 'weight' else 'beta'}"
    return name


def _candidates(name: str, ours: Dict[str, tuple]) -> List[str]:
    """Our names a file name could mean, best first."""
    base = _strip_prefix(name)
    out = [name, base]
    for old, new in _ZOO_ALIASES:
        if old in base:
            out.append(base.replace(old, new))
    module, _, leaf = base.rpartition(".")
    is_norm = f"{torchvision_to_ours(module, False)}.gamma" in ours
    out.append(torchvision_to_ours(base, is_norm))
    return [c for c in out if c in ours] or [out[-1]]


def match_weights(file_weights: Dict[str, np.ndarray], ours: Dict[str, tuple], path: str = ""):
    """Map file names onto ``ours`` ({name: shape}). Returns ({our name: array}, LoadReport)."""
    report = LoadReport(path=path)
    matched: "OrderedDict[str, np.ndarray]" = OrderedDict()
    for name, value in file_weights.items():
        if (name.endswith("num_batches_tracked") or _OPTIMIZER_PATTERN.match(name)
                or name == CONVENTION_KEY):
            report.ignored.append(name)
            continue
        if is_classifier_name(name):
            report.skipped_classifier.append(name)
            continue
        target = _candidates(name, ours)[0]
        if target not in ours:
            report.unexpected.append(name)
            continue
        if target in matched:
            report.unexpected.append(f"{name} (duplicate of {target})")
            continue
        if tuple(value.shape) != tuple(ours[target]):
            report.mismatched.append((target, tuple(ours[target]), tuple(value.shape)))
            continue
        matched[target] = value
    report.loaded = list(matched)
    report.missing = [n for n in ours if n not in matched and
                      n not in {m[0] for m in report.mismatched}]
    return matched, report


def load_imagenet_weights(backbone, path: str) -> LoadReport:
    """Fill ``backbone``'s parameters from the ImageNet weights in ``path``; returns the report.

    Raises ValueError (naming ``path``) on shape mismatches (another depth or width) or when
    no backbone parameter is found in the file (a foreign file).
    """
    import mindspore as ms

    params = OrderedDict(backbone.parameters_and_names())
    ours = OrderedDict((name, tuple(p.shape)) for name, p in params.items())
    weights = read_weight_file(path)
    matched, report = match_weights(weights, ours, path)
    logger.info("ImageNet weights from %s:\n%s", path, report.table())
    if report.mismatched:
        details = "; ".join(f"{n}: backbone {a}, file {b}" for n, a, b in report.mismatched[:5])
        raise ValueError(
            f"ImageNet weights {path} do not fit the backbone ({len(report.mismatched)} shape "
            f"mismatches, e.g. {details}). Check MODEL.BACKBONE.DEPTH and BASE_WIDTH against the "
            "network the file was trained with.")
    if not matched:
        examples = ", ".join(list(weights)[:5])
        raise ValueError(
            f"{path} holds no parameter of a ResNet backbone (first names: {examples}). "
            "MODEL.BACKBONE.PRETRAIN_PATH must be an ImageNet ResNet with model-zoo names "
            "(conv1.weight, bn1.gamma, layer1.0.conv1.weight, ...) or torchvision names "
            "(bn1.running_mean, layer1.0.downsample.0.weight, ...).")
    if report.missing:
        logger.warning("%d backbone parameters were not in %s and keep their initial values: %s",
                       len(report.missing), path, ", ".join(report.missing[:10]))
    file_convention = weights_convention(weights)
    ours_convention = getattr(backbone, "convention", None)
    if ours_convention is not None and ours_convention != file_convention:
        logger.warning(
            "%s holds %s weights, trained with %s, but the backbone is built with %s "
            "(MODEL.BACKBONE.CONVENTION %s): its features differ from those of the network the "
            "weights come from. Set MODEL.BACKBONE.CONVENTION %s to match the file.", path,
            file_convention, CONVENTION_TEXT.get(file_convention, file_convention),
            CONVENTION_TEXT.get(ours_convention, ours_convention), ours_convention,
            file_convention)
    for name, value in matched.items():
        param = params[name]
        param.set_data(ms.Tensor(np.ascontiguousarray(value), param.dtype))
    return report


class PretrainedWeightsMissing(FileNotFoundError):
    """MODEL.BACKBONE.PRETRAIN is on but the ImageNet file is not there."""


def check_pretrained_weights(cfg) -> Optional[str]:
    """The path of the ImageNet weights training will load (None when MODEL.BACKBONE.PRETRAIN
    is off); :class:`PretrainedWeightsMissing` with what to do when the file is missing.

    Cheap (no file is read): the trainer calls it before building loaders or the model.
    """
    bcfg = cfg.MODEL.BACKBONE
    if not bcfg.PRETRAIN:
        return None
    path = os.path.expanduser(str(bcfg.PRETRAIN_PATH or ""))
    if path and os.path.isfile(path):
        return path
    where = (f"the file {os.path.abspath(path)} does not exist" if path
             else "MODEL.BACKBONE.PRETRAIN_PATH is empty")
    raise PretrainedWeightsMissing(
        f"MODEL.BACKBONE.PRETRAIN is True (the recipe starts from ImageNet weights) but {where}. "
        f"The seed starts from the MindSpore model-zoo ResNet-50 {SEED_IMAGENET_CHECKPOINT}: put "
        f"it at that path, or set MODEL.BACKBONE.PRETRAIN_PATH to where it is (a torchvision "
        "ResNet saved as .npz / .safetensors works too, with MODEL.BACKBONE.CONVENTION "
        "torchvision). Nothing is downloaded. To train from scratch on purpose, add "
        "MODEL.BACKBONE.PRETRAIN False.")


def load_pretrained_backbone(model, cfg) -> Optional[LoadReport]:
    """Load MODEL.BACKBONE.PRETRAIN_PATH into ``model.backbone`` when MODEL.BACKBONE.PRETRAIN
    is on (None otherwise); errors as :func:`check_pretrained_weights` and
    :func:`load_imagenet_weights`."""
    path = check_pretrained_weights(cfg)
    if path is None:
        return None
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(f"MODEL.BACKBONE.PRETRAIN is True but {type(model).__name__} has no "
                         "'backbone' attribute to load the ImageNet weights into.")
    return load_imagenet_weights(backbone, path)
