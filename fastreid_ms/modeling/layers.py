"""Small cells shared by heads."""
import mindspore.nn as nn

from .losses.triplet import l2_normalize


class L2Norm(nn.Cell):
    """``x / ||x||`` along ``axis``, in float32 (any shape; same shape out, float32).

    ``keep_float32``: mixed precision leaves this cell in float32 (see
    ``engine.train_step.keep_losses_float32``): under O2 / O3 PyNative would otherwise run its
    operators in float16, where the 1e-12 floor is 0 and a 2048-channel sum of squares
    overflows.
    """
    keep_float32 = True

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = int(axis)

    def construct(self, x):
        return l2_normalize(x, axis=self.axis)
