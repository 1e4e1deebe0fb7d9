"""Training produces a usable model: the demo config (AlignedReID++ on the synthetic data, the
seed's recipe on a ResNet-18 of width 16) trained through tools/train_net.py for
QUALITY_EPOCHS epochs, then evaluated again with --eval-only and re-ranking.

Chance level is measured here on the same test split (random distances); the thresholds come
from measured runs of this exact command (see MEASURED below) less a margin.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastreid_ms  # noqa: F401

from fastreid_ms.data.datasets import Synthetic
from fastreid_ms.evaluation.rank import evaluate_rank
from fastreid_ms.utils.events import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
DEMO = os.path.join(REPO, "configs", "Demo", "alignedpp_demo.yml")
METRICS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")

QUALITY_EPOCHS = 30
# Final evaluation of `train_net.py --config-file configs/Demo/alignedpp_demo.yml
# SOLVER.MAX_EPOCH 30` (the synthetic split: 200 queries, 1,020 gallery images), measured on
# a 2-core Intel Xeon (AVX-512) with 1 and with 2 threads: (Rank-1, mAP), plain and re-ranked.
# Both thread counts gave bitwise identical weights (python tools/run_demo.py --epochs 30
# --threads 1 2).
MEASURED = {"Rank-1": 76.5, "mAP": 56.57, "RK Rank-1": 82.5, "RK mAP": 70.85}
# Thresholds: about 15 points below the measured values (other CPUs round differently and a
# 30-epoch run is not converged), some 50 points above chance (Rank-1 0.9 %, mAP 1.5 %).
MIN_RANK1, MIN_MAP = 60.0, 40.0
MIN_RK_RANK1, MIN_RK_MAP = 65.0, 55.0


def _train_net(args, timeout=900):
    return subprocess.run([sys.executable, TRAIN_NET, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    out = root / "demo"
    args = ["--config-file", DEMO, "OUTPUT_DIR", str(out), "DATASETS.ROOT", str(root / "data"),
            "SOLVER.MAX_EPOCH", str(QUALITY_EPOCHS)]
    proc = _train_net(args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, out, proc


def chance_level(data_root, draws=20):
    """Mean Rank-1 / mAP (percent) of random distances on the demo's test split."""
    dataset = Synthetic(root=str(data_root), verbose=False)
    q = np.array([(p, c) for _, p, c in dataset.query])
    g = np.array([(p, c) for _, p, c in dataset.gallery])
    rng = np.random.default_rng(0)
    r1, ap = [], []
    for _ in range(draws):
        cmc, m_ap, _ = evaluate_rank(rng.random((len(q), len(g))), q[:, 0], g[:, 0], q[:, 1],
                                     g[:, 1])
        r1.append(cmc[0])
        ap.append(m_ap)
    return 100 * float(np.mean(r1)), 100 * float(np.mean(ap)), len(q), len(g)


def _tables(stdout):
    """{row label: [six floats]} of every evaluation table printed."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| Synthetic"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


@pytest.mark.slow
def test_demo_config_learns_far_above_chance(demo_run):
    root, out, _ = demo_run
    final = [r for r in read_metrics(str(out / "metrics.json")) if "mAP" in r][-1]
    assert final["epoch"] == QUALITY_EPOCHS
    chance_r1, chance_map, nq, ng = chance_level(root / "data")
    assert (nq, ng) == (200, 1020)
    assert chance_r1 < 3 and chance_map < 3  # measured (20 draws): Rank-1 0.9, mAP 1.5
    report = (f"chance Rank-1 {chance_r1:.1f} mAP {chance_map:.1f}; got " +
              ", ".join(f"{k} {final[k]:.2f}" for k in MEASURED))
    assert final["Rank-1"] >= MIN_RANK1 and final["mAP"] >= MIN_MAP, report
    assert final["RK Rank-1"] >= MIN_RK_RANK1 and final["RK mAP"] >= MIN_RK_MAP, report


@pytest.mark.slow
def test_eval_only_with_reranking_prints_both_tables_equal_to_training(demo_run, tmp_path):
    """--eval-only on model_final.ckpt with TEST.RERANK.ENABLED True prints the plain and the
    re-ranked table, equal to the evaluation the training run did in its own process."""
    root, out, proc = demo_run
    trained = _tables(proc.stdout)
    args = ["--config-file", DEMO, "--eval-only", "OUTPUT_DIR", str(tmp_path / "eval"),
            "DATASETS.ROOT", str(root / "data"), "MODEL.WEIGHTS", str(out / "model_final.ckpt"),
            "TEST.RERANK.ENABLED", "True"]
    evaluated = _train_net(args)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    tables = _tables(evaluated.stdout)
    assert set(tables) == {"Synthetic", "Synthetic RK"}
    final = [r for r in read_metrics(str(out / "metrics.json")) if "mAP" in r][-1]
    for label, prefix in (("Synthetic", ""), ("Synthetic RK", "RK ")):
        assert tables[label] == trained[label]
        for value, name in zip(tables[label], METRICS):
            assert value == pytest.approx(final[prefix + name], abs=0.006), (label, name)
    # Re-ranking changes the result (the two tables are not one table printed twice).
    assert tables["Synthetic"] != tables["Synthetic RK"]
