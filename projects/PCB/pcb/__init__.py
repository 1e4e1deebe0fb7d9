"""PCB plugin: importing it registers ``PCBHead`` (HEAD_REGISTRY), ``PCBCrossEntropyLoss``
(LOSS_REGISTRY) and the config keys MODEL.HEADS.NUM_STRIPES / STRIPE_DIM / STRIPE_TEST_FEAT,
MODEL.LOSSES.PCB_CE.*. Configs name it under ``PLUGINS: ["projects.PCB.pcb"]``."""
from .config import add_pcb_config
from .head import PCBHead, stripe_pool
from .loss import PCBCrossEntropyLoss, stripe_cross_entropy

__all__ = ["add_pcb_config", "PCBHead", "stripe_pool", "PCBCrossEntropyLoss",
           "stripe_cross_entropy"]
