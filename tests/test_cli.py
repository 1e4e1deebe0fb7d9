"""The shared command line of the entry points."""
import fastreid_ms  # noqa: F401
import mindspore as ms
import numpy as np
import pytest

from fastreid_ms.engine.defaults import default_argument_parser
from fastreid_ms.utils.env import set_mindspore_context


def test_flags_before_or_after_overrides():
    parser = default_argument_parser()
    before = parser.parse_args(["--config-file", "a.yml", "--eval-only", "MODEL.WEIGHTS", "w.ckpt",
                                "TEST.RERANK.ENABLED", "True"])
    after = parser.parse_args(["--config-file", "a.yml", "MODEL.WEIGHTS", "w.ckpt", "--eval-only",
                               "TEST.RERANK.ENABLED", "True", "--resume"])
    assert before.eval_only and not before.resume
    assert after.eval_only and after.resume
    assert before.opts == after.opts == ["MODEL.WEIGHTS", "w.ckpt", "TEST.RERANK.ENABLED", "True"]


def test_context_can_be_set_again_after_kernels_ran():
    x = ms.Tensor(np.ones(3, np.float32))
    assert float((x + 1).sum().asnumpy()) == 6.0
    set_mindspore_context("CPU", "PYNATIVE")
    assert ms.get_context("mode") == ms.PYNATIVE_MODE
    set_mindspore_context("CPU", "GRAPH")
    assert ms.get_context("mode") == ms.GRAPH_MODE


def test_run_cli_turns_user_errors_into_one_line_and_status_2(capsys):
    from fastreid_ms.utils.cli import run_cli

    def failing(argv=None):
        raise FileNotFoundError(f"no such folder: {argv[0]}")

    assert run_cli(failing, "tool.py", argv=["/missing"]) == 2
    assert capsys.readouterr().err == "tool.py: error: no such folder: /missing\n"
    assert run_cli(lambda: "out.npz", "tool.py") == 0          # a non-int result is success
    assert run_cli(lambda: 3, "tool.py") == 3
    with pytest.raises(TypeError):                             # not a user error: traceback
        run_cli(lambda: None + 1, "tool.py")
