"""tools/plot_metrics.py: metrics.json -> PNG (losses, lr, evaluation metrics)."""
import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="pip install fastreid_ms[plot]")
from PIL import Image  # noqa: E402
from _builders import load_script  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


plot_tool = load_script("tools/plot_metrics.py", "plot_metrics_tool")


def _write_metrics(folder, records, tail=""):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "metrics.json")
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.write(tail)
    return path


def _training_records():
    records = []
    it = 0
    for epoch in range(6):
        for _ in range(2):
            it += 5
            records.append({"time": 1000.0 + it, "type": "train", "epoch": epoch, "iteration": it,
                            "loss_cls": 4.0 / it, "loss_triplet": 0.5 / it, "total_loss": 4.5 / it,
                            "lr": 0.01 * it, "images_per_s": 50.0, "loss_scale": 1.0})
        if epoch % 2 == 1:
            records.append({"time": 1000.0 + it, "type": "eval", "epoch": epoch,
                            "Rank-1": 40.0 + epoch, "Rank-5": 60.0 + epoch, "Rank-10": 70.0,
                            "Rank-20": 80.0, "mAP": 30.0 + 2 * epoch, "mINP": 10.0,
                            "RK Rank-1": 45.0 + epoch, "RK mAP": 40.0 + epoch})
    return records


def test_curves_extracted_from_records(tmp_path):
    records = _training_records()
    train = plot_tool.training_curves(records)
    assert train["x_label"] == "iteration"
    assert sorted(train["losses"]) == ["loss_cls", "loss_triplet", "total_loss"]  # not loss_scale
    xs, ys = train["losses"]["loss_cls"]
    assert xs == [5.0 * i for i in range(1, 13)]
    np.testing.assert_allclose(ys, [4.0 / x for x in xs])
    assert train["lr"][1][-1] == pytest.approx(0.6)

    evals = plot_tool.eval_curves(records)
    assert list(evals) == [""]
    assert evals[""]["mAP"] == ([1.0, 3.0, 5.0], [32.0, 36.0, 40.0])
    assert evals[""]["RK Rank-1"][1] == [46.0, 48.0, 50.0]
    assert "Rank-20" not in evals[""]


def test_png_written_with_sane_size(tmp_path):
    path = _write_metrics(str(tmp_path / "run"), _training_records(), tail='{"type": "tra')
    out = plot_tool.plot_metrics(str(tmp_path / "run"), dpi=50)
    assert out == os.path.join(str(tmp_path / "run"), "metrics.png")
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == (750, 210)           # figsize 15 x 4.2 inches at 50 dpi
        pixels = np.asarray(img.convert("L"), dtype=np.float32)
    assert pixels.std() > 5.0                   # curves and text, not a blank canvas
    assert plot_tool.main([path, "-o", str(tmp_path / "x" / "curves.png"), "--dpi", "40"]) == 0
    with Image.open(tmp_path / "x" / "curves.png") as img:
        assert img.size == (600, 168)


def test_epoch_axis_without_iterations(tmp_path):
    records = [{"epoch": e, "loss_cls": 1.0 / (e + 1), "lr": 0.1} for e in range(3)]
    records.append({"epoch": 2, "Rank-1": 10.0, "mAP": 5.0})
    assert plot_tool.training_curves(records)["x_label"] == "epoch"
    path = _write_metrics(str(tmp_path), records)
    assert os.path.isfile(plot_tool.plot_metrics(path, dpi=30))


def test_missing_file_error_names_the_path(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(plot_tool.MetricsFileError, match="No metrics file at .*nowhere"):
        plot_tool.plot_metrics(missing)
    assert plot_tool.main([missing]) == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "train_net.py" in err


def test_empty_file_error(tmp_path):
    path = _write_metrics(str(tmp_path), [], tail="\n")
    with pytest.raises(plot_tool.MetricsFileError, match="holds no records"):
        plot_tool.plot_metrics(path)
    assert not os.path.exists(tmp_path / "metrics.png")


def test_records_without_values_error(tmp_path):
    path = _write_metrics(str(tmp_path), [{"type": "train", "epoch": 0, "images_per_s": 3.0}])
    with pytest.raises(plot_tool.MetricsFileError, match="no loss, learning-rate or evaluation"):
        plot_tool.plot_metrics(path)


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    path = _write_metrics(str(tmp_path), _training_records())
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install fastreid_ms\[plot\]"):
        plot_tool.plot_metrics(path)
