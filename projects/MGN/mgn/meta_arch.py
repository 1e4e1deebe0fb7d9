"""MGN meta-architecture: shared ResNet trunk -> MGNHead (three branches) -> the listed losses.

The trunk and the branches are made from one ResNet that MODEL.BACKBONE describes (the
toolbox's registered backbone): the trunk keeps its stem, layer1, layer2 and layer3's first
block; every branch of the head gets its own copy of the rest of layer3 and of layer4.

ImageNet weights: the trainer loads MODEL.BACKBONE.PRETRAIN_PATH into ``model.backbone``
(``fastreid_ms.modeling.backbones.pretrained.load_pretrained_backbone``). For MGN that
attribute is an :class:`ImageNetTargets` view that names every parameter by the ResNet's own
name and writes each loaded value into all its copies (the trunk's once, layer3[1:] and
layer4 once per branch), so every branch starts from the ImageNet weights, as fast-reid's
MGN does by copying its pretrained backbone.
"""
from collections import OrderedDict

import mindspore as ms
import mindspore.nn as nn

from fastreid_ms.modeling.backbones import build_backbone
from fastreid_ms.modeling.heads.build import HEAD_REGISTRY
from fastreid_ms.modeling.losses.build import build_losses, loss_names
from fastreid_ms.modeling.meta_arch.build import META_ARCH_REGISTRY


class ResNetTrunk(nn.Cell):
    """The part of a ResNet the MGN branches share: stem, layer1, layer2, layer3[0].

    images (N, 3, H, W) -> (N, C3, H / 16, W / 16). Its parameter names are the ResNet's
    (``conv1.weight``, ``layer3.0.conv1.weight``, ...); the cells are the ResNet's own."""

    def __init__(self, resnet):
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.pad = resnet.pad
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = nn.SequentialCell([resnet.layer3[0]])
        self.convention = getattr(resnet, "convention", None)
        first = resnet.layer3[0]
        self.out_channels = int(first.conv1.out_channels) * first.expansion

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.pad(x))
        return self.layer3(self.layer2(self.layer1(x)))


class ParameterCopies:
    """The parameters that hold copies of one ResNet parameter, seen as one: ``shape``,
    ``dtype`` and ``set_data`` (which writes the value into every copy)."""

    def __init__(self, params):
        self.params = list(params)
        self.shape = tuple(self.params[0].shape)
        self.dtype = self.params[0].dtype
        for p in self.params[1:]:
            if tuple(p.shape) != self.shape:
                raise ValueError(f"Copies of one ResNet parameter differ in shape: {p.name} "
                                 f"{tuple(p.shape)} vs {self.params[0].name} {self.shape}.")

    def set_data(self, value):
        array = value.asnumpy() if hasattr(value, "asnumpy") else value
        for p in self.params:
            p.set_data(ms.Tensor(array.copy(), p.dtype))


class ImageNetTargets:
    """An MGN model as the ImageNet loader sees its backbone: ``parameters_and_names()`` yields
    (ResNet name, :class:`ParameterCopies`), ``convention`` is the trunk's."""

    def __init__(self, model):
        self.convention = model.trunk.convention
        self._targets = OrderedDict()
        for name, param in model.trunk.parameters_and_names():
            self._targets.setdefault(name, []).append(param)
        for name, param in model.heads.resnet_names():
            self._targets.setdefault(name, []).append(param)

    def parameters_and_names(self):
        for name, params in self._targets.items():
            yield name, ParameterCopies(params)

    def copies(self, name):
        """The parameters holding ResNet parameter ``name`` (e.g. 'layer4.0.conv1.weight')."""
        return list(self._targets[name])


@META_ARCH_REGISTRY.register()
class MGN(nn.Cell):
    """images (N, 3, H, W) -> ResNetTrunk -> MGNHead.

    Training: ``model(images, targets)`` returns ``{loss_name: scaled scalar}`` of the losses
    MODEL.LOSSES.NAME lists (e.g. "loss_mgn_cls", "loss_mgn_triplet"). Eval: ``model(images)``
    returns ``{"global": (N, 8 x REDUCTION_DIM)}``.

    Built from the config, or from ready cells: ``MGN(resnet=..., heads=..., losses=[...])``
    (``heads`` defaults to an MGNHead copied from ``resnet``).
    """

    def __init__(self, cfg=None, *, resnet=None, heads=None, losses=None, num_classes=None):
        super().__init__()
        if cfg is not None:
            resnet = build_backbone(cfg) if resnet is None else resnet
            if heads is None:
                head_cls = HEAD_REGISTRY.get(cfg.MODEL.HEADS.NAME)
                if not hasattr(head_cls, "resnet_names"):
                    raise ValueError(
                        f"MODEL.META_ARCHITECTURE MGN needs a head with MGN's branches "
                        f"(MODEL.HEADS.NAME MGNHead), got '{cfg.MODEL.HEADS.NAME}'.")
                heads = head_cls(cfg, resnet=resnet)
            num_classes = cfg.MODEL.HEADS.NUM_CLASSES if num_classes is None else num_classes
            if losses is None:
                losses = build_losses(cfg, num_classes)
        if resnet is None:
            raise ValueError("MGN needs a config or resnet= (a ResNet backbone to split).")
        if not all(hasattr(resnet, k) for k in ("conv1", "layer1", "layer2", "layer3", "layer4")):
            raise ValueError(f"MGN splits a ResNet backbone (conv1 ... layer4); "
                             f"MODEL.BACKBONE.NAME built a {type(resnet).__name__}.")
        if heads is None:
            from .head import MGNHead
            heads = MGNHead(resnet=resnet, num_classes=num_classes)
        self.trunk = ResNetTrunk(resnet)
        self.heads = heads
        self.num_classes = int(num_classes if num_classes is not None
                               else getattr(heads, "num_classes", 0) or 0)
        losses = list(losses or [])
        self.loss_names = loss_names(losses)
        self.losses = nn.CellList(losses)
        self._no_class_msg = (
            f"MGN cannot train with MODEL.HEADS.NUM_CLASSES = {self.num_classes}: set it to the "
            "number of training identities (the trainer fills it from the training set), or use "
            "the model in eval mode (set_train(False)) to extract features.")

    @property
    def backbone(self):
        """The ImageNet loader's view of the ResNet parameters (see the module docstring)."""
        return ImageNetTargets(self)

    def set_train(self, mode=True):
        if mode and self.num_classes <= 0:
            raise ValueError(self._no_class_msg)
        return super().set_train(mode)

    def construct(self, images, targets=None):
        outputs = self.heads(self.trunk(images))
        if not self.training:
            return outputs
        losses = {}
        for i in range(len(self.loss_names)):
            losses[self.loss_names[i]] = self.losses[i](outputs, targets)
        return losses
