"""msrun worker of tests/test_distributed.py: tools/train_net.py plus a per-rank dump.

    msrun ... tests/dist_worker.py DUMP_DIR OUT_BASE [train_net.py arguments ...]

Runs ``tools/train_net.py``'s ``run`` unchanged, with OUTPUT_DIR set to
``OUT_BASE/rank<RANK_ID>`` so that the test can tell which rank wrote files, and wraps
``DefaultTrainer.train`` to write, per rank, into DUMP_DIR:

* ``params_rank<r>_init.npz`` / ``params_rank<r>_final.npz``: the trainable parameters
  before and after training;
* ``rank<r>.json``: rank, world size, the local batch, whether gradients are reduced,
  the results of the ``fastreid_ms.utils.comm`` collectives run after training, and one
  step of a least-squares model through the trainer's grad reducer next to the NumPy
  full-batch answer.
"""
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import fastreid_ms  # noqa: E402,F401
from _builders import load_script  # noqa: E402


def _params(model) -> dict:
    return {p.name: p.asnumpy() for p in model.trainable_params()}


def _collectives(rank: int) -> dict:
    """Results of the comm helpers with rank-dependent inputs (checked by the test)."""
    from fastreid_ms.utils import comm
    rows = np.arange((rank + 1) * 3, dtype=np.int64).reshape(rank + 1, 3) + 100 * rank
    comm.synchronize()
    return {
        "sum": comm.all_reduce(np.array([rank + 1.0, 0.5]), "sum").tolist(),
        "mean": comm.all_reduce(np.array([rank + 1.0]), "mean").tolist(),
        "max": comm.all_reduce(np.array([rank, -rank]), "max").tolist(),
        "min": comm.all_reduce(np.array([rank, -rank]), "min").tolist(),
        "gather": comm.all_gather(rows).tolist(),
        "gather_dtype": str(comm.all_gather(rows).dtype),
        "broadcast": comm.broadcast(np.array([rank + 7, rank]), src=1).tolist(),
        "seed": comm.shared_random_seed(),
    }


def _mean_gradient_step(trainer, rank: int, world: int) -> dict:
    """One SGD step of a bias-free linear least-squares model through the engine's
    TrainStep with the trainer's grad reducer, each rank on its slice of a fixed batch.

    Returns the updated weight and the weight a single process would reach on the whole
    batch (computed here in NumPy): equal when the reducer averages the gradients.
    """
    import mindspore as ms
    from mindspore import nn, ops
    from fastreid_ms.engine.train_step import TrainStep

    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    x = rng.standard_normal((4 * world, 4)).astype(np.float32)
    y = rng.standard_normal((4 * world, 3)).astype(np.float32)
    lr = 0.1

    class LeastSquares(nn.Cell):
        loss_names = ("loss_mse",)

        def __init__(self):
            super().__init__()
            self.weight = ms.Parameter(ms.Tensor(w0), name="ls_weight")

        def construct(self, inputs, targets):
            err = ops.matmul(inputs, self.weight.T) - targets
            return {"loss_mse": 0.5 * (err * err).sum(axis=1).mean()}

    model = LeastSquares()
    optimizer = nn.SGD(model.trainable_params(), learning_rate=lr)
    step = TrainStep(model, optimizer, None, grad_reducer=trainer.build_grad_reducer(optimizer))
    mine = slice(4 * rank, 4 * (rank + 1))
    step(ms.Tensor(x[mine]), ms.Tensor(y[mine]))
    grad = ((x.astype(np.float64) @ w0.T - y).T @ x) / len(x)   # full-batch mean gradient
    return {"weight": model.weight.asnumpy().tolist(), "expected": (w0 - lr * grad).tolist()}


def main(argv) -> int:
    dump_dir, out_base, train_args = argv[0], argv[1], list(argv[2:])
    from fastreid_ms.engine import DefaultTrainer
    from fastreid_ms.engine.launch import is_scheduler
    from fastreid_ms.utils import comm

    label = "scheduler" if is_scheduler() else os.environ.get("RANK_ID", "0")
    train_args += ["OUTPUT_DIR", os.path.join(out_base, f"rank{label}")]
    original_train = DefaultTrainer.train

    def train_and_dump(self):
        rank = comm.get_rank()
        np.savez(os.path.join(dump_dir, f"params_rank{rank}_init.npz"), **_params(self.model))
        results = original_train(self)
        np.savez(os.path.join(dump_dir, f"params_rank{rank}_final.npz"), **_params(self.model))
        info = {"rank": rank, "world_size": comm.get_world_size(),
                "local_batch": int(self.train_loader.batch_size),
                "iters_per_epoch": int(self.iters_per_epoch),
                "grad_reducer": self.grad_reducer is not None,
                "collectives": _collectives(rank),
                "mean_gradient_step": _mean_gradient_step(self, rank, comm.get_world_size())}
        with open(os.path.join(dump_dir, f"rank{rank}.json"), "w", encoding="utf-8") as f:
            json.dump(info, f)
        return results

    DefaultTrainer.train = train_and_dump
    return load_script("tools/train_net.py", "train_net_under_test").run(train_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
