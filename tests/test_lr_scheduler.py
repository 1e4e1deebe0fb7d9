"""Learning-rate schedules against a per-iteration reference written from the formula, and
short runs whose warm-up is cut (MAX_EPOCH 1 or 2 with the recipe's 6 warm-up epochs)."""
import logging
import math

import numpy as np
import pytest

import fastreid_ms  # noqa: F401  (CPU set-up before MindSpore runs)
import mindspore as ms

from fastreid_ms.config import get_cfg
from fastreid_ms.solver import TableLR, build_lr_scheduler, warmup_cosine_lr, warmup_multistep_lr


def reference_lr(i, iters, base, start, warm_epochs, max_epoch, sched, eta_min=0.0, steps=(),
                 gamma=0.1):
    """Slow, direct transcription of the documented formula for iteration i (0-based)."""
    warm = int(round(warm_epochs * iters))
    total = max_epoch * iters
    if i < warm:
        return start + (base - start) * (i + 1) / warm
    if sched == "cos":
        return eta_min + (base - eta_min) * (1 + math.cos(math.pi * (i - warm) / (total - warm))) / 2
    epoch = i // iters
    k = sum(1 for s in steps if s <= epoch)
    return base * gamma ** k


def test_seed_schedule_values():
    # The seed: lr_init 0 -> lr_max 5e-2 over 6 epochs, cosine to 3.5e-6 at epoch 300.
    iters = 23
    cfg = get_cfg()
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.WARMUP_EPOCHS, cfg.SOLVER.MAX_EPOCH) == (5e-2, 6, 300)
    lrs = build_lr_scheduler(cfg, iters)
    assert lrs.shape == (300 * iters,)
    warm = 6 * iters
    assert lrs[0] == pytest.approx(5e-2 / warm)
    assert lrs[warm // 2 - 1] == pytest.approx(5e-2 * (warm // 2) / warm)
    assert lrs[warm - 1] == pytest.approx(5e-2)
    assert lrs[warm] == pytest.approx(5e-2)  # cosine starts at the peak
    mid = warm + (300 * iters - warm) // 2
    expected_mid = 3.5e-6 + (5e-2 - 3.5e-6) * (1 + math.cos(math.pi * (mid - warm) /
                                                              (300 * iters - warm))) / 2
    assert lrs[mid] == pytest.approx(expected_mid, rel=1e-12)
    # The last iteration is one step short of the floor.
    assert 3.5e-6 < lrs[-1] < 3.5e-6 + 1e-6
    assert np.all(np.diff(lrs[warm:]) <= 0) and np.all(np.diff(lrs[:warm]) > 0)
    for i in (0, 1, 57, warm - 1, warm, warm + 1, 1000, 3000, 300 * iters - 1):
        assert lrs[i] == pytest.approx(
            reference_lr(i, iters, 5e-2, 0.0, 6, 300, "cos", eta_min=3.5e-6), rel=1e-12)


@pytest.mark.parametrize("iters,warm,max_epoch,start", [(5, 2, 10, 0.001), (7, 0, 4, 0.0),
                                                       (3, 1.5, 6, 0.01)])
def test_cosine_matches_reference_everywhere(iters, warm, max_epoch, start):
    lrs = warmup_cosine_lr(0.1, iters, max_epoch, warm, start, eta_min=1e-4)
    ref = [reference_lr(i, iters, 0.1, start, warm, max_epoch, "cos", eta_min=1e-4)
           for i in range(iters * max_epoch)]
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)


def test_multistep_matches_reference():
    lrs = warmup_multistep_lr(0.1, 4, 12, steps=[3, 8], gamma=0.5, warmup_epochs=1,
                              warmup_start_lr=0.01)
    ref = [reference_lr(i, 4, 0.1, 0.01, 1, 12, "step", steps=(3, 8), gamma=0.5) for i in range(48)]
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)
    assert lrs[4 * 3 - 1] == pytest.approx(0.1) and lrs[4 * 3] == pytest.approx(0.05)
    assert lrs[4 * 8] == pytest.approx(0.025)


def test_warmup_start_from_factor_or_value():
    cfg = get_cfg()
    cfg.SOLVER.MAX_EPOCH = 4
    cfg.SOLVER.WARMUP_EPOCHS = 2
    cfg.SOLVER.BASE_LR = 0.2
    cfg.SOLVER.WARMUP_FACTOR = 0.1
    lrs = build_lr_scheduler(cfg, 10)
    assert lrs[0] == pytest.approx(0.02 + 0.18 / 20)
    cfg.SOLVER.WARMUP_START_LR = 0.05  # wins over the factor when >= 0
    lrs = build_lr_scheduler(cfg, 10)
    assert lrs[0] == pytest.approx(0.05 + 0.15 / 20)
    cfg.SOLVER.WARMUP_METHOD = "constant"
    lrs = build_lr_scheduler(cfg, 10)
    assert lrs[19] == pytest.approx(0.05) and lrs[20] == pytest.approx(0.2)


def test_schedule_errors_name_the_key():
    cfg = get_cfg()
    cfg.SOLVER.SCHED = "Exponential"
    with pytest.raises(ValueError, match="SOLVER.SCHED 'Exponential'"):
        build_lr_scheduler(cfg, 5)
    with pytest.raises(ValueError, match=r"SOLVER.WARMUP_EPOCHS \(-1\) must be >= 0"):
        warmup_cosine_lr(0.1, 5, 3, warmup_epochs=-1)
    with pytest.raises(ValueError, match=r"SOLVER.WARMUP_EPOCHS \(-0.5\) must be >= 0"):
        warmup_multistep_lr(0.1, 5, 3, steps=[2], warmup_epochs=-0.5)
    with pytest.raises(ValueError, match="SOLVER.STEPS"):
        warmup_multistep_lr(0.1, 5, 3, steps=[2, 1])


def test_table_lr_reads_global_step_and_clamps():
    sched = TableLR([0.5, 0.25, 0.125])
    for step, expected in [(0, 0.5), (2, 0.125), (7, 0.125)]:
        value = sched(ms.Tensor(np.array([step], np.int32)))
        assert float(value.asnumpy()) == pytest.approx(expected)


# ----------------------------------------------------------------------------- short runs
CUT = "is not shorter than SOLVER.MAX_EPOCH"


def _recipe_cfg(max_epoch, sched="CosineAnnealingLR"):
    """The recipe's warm-up (6 epochs, linear) from 0.005 to 0.05, for a run of max_epoch."""
    cfg = get_cfg()
    cfg.SOLVER.MAX_EPOCH = max_epoch
    cfg.SOLVER.WARMUP_EPOCHS = 6
    cfg.SOLVER.WARMUP_METHOD = "linear"
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.WARMUP_START_LR = 0.005
    cfg.SOLVER.SCHED = sched
    cfg.SOLVER.STEPS = [1]  # a milestone inside the run, which the cut warm-up overrides
    return cfg


@pytest.mark.parametrize("sched", ["CosineAnnealingLR", "MultiStepLR"])
@pytest.mark.parametrize("max_epoch", [1, 2])
def test_short_run_truncates_the_warmup(caplog, max_epoch, sched):
    iters = 23
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        lrs = build_lr_scheduler(_recipe_cfg(max_epoch, sched), iters)
    # Truncated, not rescaled: lr(i) = s + (b - s) (i + 1) / W with the ORIGINAL W = 6 I,
    # for every iteration of the run; no cosine / multistep part.
    s, b, warm = 0.005, 0.05, 6 * iters
    expected = [s + (b - s) * (i + 1) / warm for i in range(max_epoch * iters)]
    assert lrs.shape == (max_epoch * iters,)
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[0] == pytest.approx(0.005 + 0.045 / 138)
    assert lrs[-1] == pytest.approx(0.005 + 0.045 * max_epoch / 6) and lrs[-1] < b
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and CUT in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].name == "fastreid_ms"
    assert warnings[0].getMessage() == (
        f"SOLVER.WARMUP_EPOCHS (6.0) is not shorter than SOLVER.MAX_EPOCH ({max_epoch}): the "
        f"warm-up is cut at the end of the run after {23 * max_epoch} of its 138 iterations (the "
        "learning rate follows the 6.0-epoch warm-up line, so it stops below SOLVER.BASE_LR) and "
        "there is no decay part.")


def test_warmup_as_long_as_the_run_reaches_the_base_lr_at_the_end(caplog):
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        lrs = warmup_cosine_lr(0.1, 4, 3, warmup_epochs=3, warmup_start_lr=0.0, eta_min=1e-4)
    np.testing.assert_allclose(lrs, [0.1 * (i + 1) / 12 for i in range(12)], rtol=1e-12)
    assert lrs[-1] == pytest.approx(0.1)
    assert "the warm-up fills the whole run (12 iterations; the learning rate reaches " \
           "SOLVER.BASE_LR at the last one)" in caplog.text


def test_normal_run_unchanged_and_silent(caplog):
    # One iteration shorter than the run: the usual warm-up + cosine, no warning.
    iters, max_epoch, warm_epochs = 5, 2, 1.8
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        cos = warmup_cosine_lr(0.1, iters, max_epoch, warm_epochs, 0.01, eta_min=1e-4)
        step = warmup_multistep_lr(0.1, iters, max_epoch, steps=[1], gamma=0.5,
                                   warmup_epochs=warm_epochs, warmup_start_lr=0.01)
        lrs = build_lr_scheduler(get_cfg(), 23)  # the recipe: 6 of 300 epochs
    assert CUT not in caplog.text
    warm, total = 9, 10
    expected_cos = [0.01 + 0.09 * (i + 1) / warm for i in range(warm)] + [0.1]
    np.testing.assert_allclose(cos, expected_cos, rtol=1e-12)
    np.testing.assert_allclose(step, expected_cos[:warm] + [0.05], rtol=1e-12)
    assert len(cos) == total
    for i in (0, 137, 138, 3000, 300 * 23 - 1):
        assert lrs[i] == pytest.approx(
            reference_lr(i, 23, 5e-2, 0.0, 6, 300, "cos", eta_min=3.5e-6), rel=1e-12)
