"""Distributed data parallel (msrun on CPU), launch detection, comm helpers, the
AlignedReID++ launch scripts (usage errors, --dry-run commands) and the ModelArts entry
(with a fake ``moxing`` module).

The two slow tests start real msrun jobs of 2 CPU workers on 127.0.0.1: a short
training run of tools/train_net.py (through tests/dist_worker.py, which dumps each
rank's parameters) of a tiny AlignedReID++ and a batch / device-count mismatch that must
fail at once.
"""
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
from fastreid_ms.config import ConfigError, get_cfg
from fastreid_ms.engine import launch
from fastreid_ms.utils import comm
from fastreid_ms.utils.events import read_metrics
from _builders import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "projects", "AlignedReIDpp", "scripts")
WORKER = os.path.join(REPO, "tests", "dist_worker.py")
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")

LAUNCH_VARS = ("MS_ROLE", "MS_WORKER_NUM", "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_NODE_ID",
               "RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH", "RANK_SIZE", "RANK_ID",
               "DEVICE_ID", "DRY_RUN", "CONFIG_FILE", "SERVER_ID", "FASTREID_DEVICE")


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _clean_environ(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(extra)
    return env


# ----------------------------------------------------------------------------- launch
def test_launch_mode_from_environment(clean_env):
    assert launch.launch_mode() == "single" and not launch.is_launched_as_worker()
    assert launch.expected_world_size() == 1
    clean_env.setenv("MS_ROLE", "MS_WORKER")
    clean_env.setenv("MS_WORKER_NUM", "4")
    assert launch.launch_mode() == "msrun" and launch.is_launched_as_worker()
    assert launch.expected_world_size() == 4 and not launch.is_scheduler()
    clean_env.setenv("MS_ROLE", "MS_SCHED")
    assert launch.is_launched_as_worker() and launch.is_scheduler()
    clean_env.delenv("MS_ROLE")
    clean_env.delenv("MS_WORKER_NUM")
    clean_env.setenv("RANK_TABLE_FILE", "/x/rank_table_8pcs.json")
    clean_env.setenv("RANK_SIZE", "8")
    assert launch.launch_mode() == "rank_table" and launch.expected_world_size() == 8
    clean_env.setenv("RANK_SIZE", "1")  # the seed's single-device scripts keep a table set
    assert launch.launch_mode() == "single"


def test_half_set_environment_is_a_clear_error(clean_env):
    clean_env.setenv("RANK_SIZE", "4")
    with pytest.raises(launch.LaunchError, match=r"RANK_SIZE=4 .*msrun.*RANK_TABLE_FILE"):
        launch.launch_mode()
    clean_env.delenv("RANK_SIZE")
    clean_env.setenv("MS_ROLE", "MS_PSERVER")
    with pytest.raises(launch.LaunchError, match="MS_ROLE='MS_PSERVER'"):
        launch.launch_mode()
    clean_env.setenv("MS_ROLE", "MS_WORKER")
    clean_env.setenv("MS_WORKER_NUM", "two")
    with pytest.raises(launch.LaunchError, match="MS_WORKER_NUM='two' must be an integer"):
        launch.expected_world_size()


def test_init_distributed_refuses_unlaunched_process_and_cpu_rank_table(clean_env):
    with pytest.raises(launch.LaunchError, match="no launcher started"):
        launch.init_distributed("CPU")
    clean_env.setenv("RANK_TABLE_FILE", "/x/table.json")
    clean_env.setenv("RANK_SIZE", "8")
    with pytest.raises(launch.LaunchError, match="Ascend devices only.*CPU.*msrun"):
        launch.init_distributed("CPU")
    assert not comm.is_initialized()


def test_check_batch_split_matches_whole_identities_per_rank():
    for world in (1, 2, 3, 8):
        for k in (1, 4, 8):
            for batch in range(1, 70):
                # Valid iff every rank gets the same whole number of K-image identities.
                fits = any(p * k * world == batch for p in range(1, batch + 1))
                if fits:
                    launch.check_batch_split(batch, k, world)
                else:
                    with pytest.raises(ConfigError):
                        launch.check_batch_split(batch, k, world)
    with pytest.raises(ConfigError) as info:
        launch.check_batch_split(12, 4, 2)
    message = str(info.value)
    assert "SOLVER.IMS_PER_BATCH (12)" in message and "= 8" in message
    assert "2 worker(s)" in message and "DATALOADER.NUM_INSTANCE" in message


def test_setup_distributed_leaves_single_process_untouched(clean_env):
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 12  # would not split over 2 devices; irrelevant alone
    cfg.SEED = -1
    cfg.freeze()
    assert launch.setup_distributed(cfg) is cfg and cfg.SEED == -1
    assert not comm.is_initialized()


def test_setup_distributed_checks_batch_before_joining(clean_env):
    clean_env.setenv("MS_ROLE", "MS_WORKER")
    clean_env.setenv("MS_WORKER_NUM", "2")
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 12
    cfg.DATALOADER.NUM_INSTANCE = 4
    with pytest.raises(ConfigError, match="launch with 2 worker"):
        launch.setup_distributed(cfg)
    assert not comm.is_initialized()


def test_set_mindspore_context_keeps_device_chosen_at_init(monkeypatch):
    import mindspore as ms
    from fastreid_ms.utils.env import set_mindspore_context
    calls = []
    monkeypatch.setattr(ms, "set_device", lambda *a: calls.append(a))
    monkeypatch.setitem(comm._STATE, "initialized", True)
    set_mindspore_context("CPU", "GRAPH")
    assert calls == []
    monkeypatch.setitem(comm._STATE, "initialized", False)
    from fastreid_ms.utils import env
    monkeypatch.setattr(env, "_device_already", lambda *a: False)  # a fresh process
    set_mindspore_context("CPU", "GRAPH")
    assert calls == [("CPU",)]


# ----------------------------------------------------------------------------- comm (one process)
def test_check_resume_agrees_is_a_no_op_in_one_process(clean_env, monkeypatch):
    """One process: nothing is exchanged (no collective is called), nothing is released."""
    import mindspore.communication as ms_comm

    def must_not_run(*args):
        raise AssertionError("no collective call in one process")
    monkeypatch.setattr(comm, "all_gather", must_not_run)
    monkeypatch.setattr(ms_comm, "release", must_not_run)
    assert not comm.is_initialized()
    assert launch.check_resume_agrees(7, "logs/x") is None
    # initialised but alone (world size 1): still no exchange
    monkeypatch.setitem(comm._STATE, "initialized", True)
    monkeypatch.setattr(comm, "get_world_size", lambda: 1)
    assert launch.check_resume_agrees(7, "logs/x") is None
    assert comm.is_initialized()


@pytest.mark.parametrize("other_epoch", [7, 3])
def test_check_resume_agrees_with_mocked_ranks(clean_env, monkeypatch, other_epoch):
    """Two (mocked) ranks: this rank's epoch is gathered; equal epochs pass untouched, different
    ones release the communication, mark it down and raise naming every rank's epoch."""
    import mindspore.communication as ms_comm
    sent, released = [], []

    def fake_all_gather(array):
        sent.append(np.array(array))
        return np.concatenate([np.asarray(array), np.array([other_epoch], np.int64)])
    monkeypatch.setitem(comm._STATE, "initialized", True)
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "all_gather", fake_all_gather)
    monkeypatch.setattr(ms_comm, "release", lambda: released.append(True))
    if other_epoch == 7:
        assert launch.check_resume_agrees(7, "logs/x") is None
        assert released == [] and comm.is_initialized()
    else:
        with pytest.raises(launch.LaunchError,
                           match=r"rank 0: epoch 7, rank 1: epoch 3.*OUTPUT_DIR logs/x"):
            launch.check_resume_agrees(7, "logs/x")
        assert released == [True] and not comm.is_initialized()
    assert len(sent) == 1 and sent[0].tolist() == [7]


def test_comm_helpers_in_one_process(clean_env):
    x = np.array([[1, 2], [3, 4]], np.int64)
    assert comm.get_world_size() == 1 and comm.get_rank() == 0 and comm.is_main_process()
    comm.synchronize()
    out = comm.all_reduce(x, "mean")
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32))
    gathered = comm.all_gather(x)
    assert gathered.dtype == np.int64 and np.array_equal(gathered, x) and gathered is not x
    assert np.array_equal(comm.broadcast(x), x)
    assert 0 <= comm.shared_random_seed() < 2 ** 24
    with pytest.raises(ValueError, match="'prod'"):
        comm.all_reduce(x, "prod")


def test_scheduler_is_never_main_process(clean_env):
    clean_env.setenv("MS_ROLE", "MS_SCHED")
    clean_env.setenv("RANK_ID", "0")
    assert not comm.is_main_process()


# ----------------------------------------------------------------------------- msrun (slow)
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _msrun(script, args, log_dir, timeout):
    """msrun (as this interpreter's module) with 2 CPU workers on 127.0.0.1."""
    # msrun starts each process as "python <script>": make that this interpreter.
    shim = os.path.join(str(log_dir) + "_bin")
    os.makedirs(shim, exist_ok=True)
    os.symlink(sys.executable, os.path.join(shim, "python"))
    env = _clean_environ(GLOG_v="3", PATH=shim + os.pathsep + os.environ.get("PATH", ""))
    cmd = [sys.executable, "-m", "mindspore.parallel.cluster.run", "--worker_num=2",
           "--local_worker_num=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           f"--log_dir={log_dir}", "--join=True", "--cluster_time_out=120", script, *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


ALIGNEDPP_CONFIG = os.path.join(REPO, "configs", "Market1501", "alignedpp_R50.yml")


def _tiny_opts(data_root, extra=()):
    """AlignedReID++ (global + DMLI local triplet) shrunk to a ResNet-18 of width 16 at 64x32."""
    return ["--config-file", ALIGNEDPP_CONFIG, "DATASETS.ROOT", str(data_root),
            "DATASETS.NAMES", '["Synthetic"]', "DATASETS.TESTS", '["Synthetic"]',
            "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "16", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "8",
            "DATASETS.SYNTHETIC.IMAGES_PER_ID", "8",
            "MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.BASE_WIDTH", "16",
            "MODEL.BACKBONE.FEAT_DIM", "128", "MODEL.BACKBONE.PRETRAIN", "False",
            "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]",
            "SOLVER.IMS_PER_BATCH", "16", "DATALOADER.NUM_INSTANCE", "4",
            "DATALOADER.NUM_WORKERS", "1", "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "3",
            "SOLVER.WARMUP_EPOCHS", "0", "SOLVER.BASE_LR", "0.02", "SOLVER.LOG_PERIOD", "1",
            "TEST.IMS_PER_BATCH", "64", *extra]


def _log(path) -> str:
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


@pytest.fixture(scope="module")
def trained_job(tmp_path_factory):
    """One msrun job of 2 CPU workers: 3 iterations of a tiny AlignedReID++ (shared)."""
    root = tmp_path_factory.mktemp("msrun_train")
    dump, out = root / "dump", root / "out"
    dump.mkdir()
    # SEED -1: rank 0 draws the seed and shares it, so both ranks start alike.
    proc = _msrun(WORKER, [str(dump), str(out), *_tiny_opts(root / "data", ["SEED", "-1"])],
                  root / "msrun_log", timeout=400)
    logs = {name: _log(root / "msrun_log" / name)
            for name in ("worker_0.log", "worker_1.log", "scheduler.log")}
    assert proc.returncode == 0, (proc.stdout[-2000:] + proc.stderr[-2000:] +
                                  logs["worker_0.log"][-3000:] + logs["worker_1.log"][-3000:])
    return root, dump, out, logs


@pytest.mark.slow
def test_msrun_two_cpu_workers_train_identically_and_only_rank0_writes(trained_job):
    _, dump, out, logs = trained_job

    info = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in (0, 1):
        assert info[r]["rank"] == r and info[r]["world_size"] == 2
        assert info[r]["local_batch"] == 8 and info[r]["grad_reducer"] is True
        assert info[r]["iters_per_epoch"] == 3

    init = [np.load(dump / f"params_rank{r}_init.npz") for r in (0, 1)]
    final = [np.load(dump / f"params_rank{r}_final.npz") for r in (0, 1)]
    names = sorted(final[0].files)
    assert names == sorted(final[1].files) and len(names) > 20
    for name in names:
        # Different images on each rank, one averaged gradient: identical weights.
        assert np.array_equal(init[0][name], init[1][name]), name
        assert np.array_equal(final[0][name], final[1][name]), name
    changed = [n for n in names if not np.array_equal(final[0][n], init[0][n])]
    assert len(changed) == len(names)

    # Only rank 0 wrote: each rank had its own OUTPUT_DIR (tests/dist_worker.py).
    assert not (out / "rank1").exists()
    files = set(os.listdir(out / "rank0"))
    assert {"config.yaml", "log.txt", "metrics.json", "model_final.ckpt",
            "last_checkpoint"} <= files
    records = read_metrics(str(out / "rank0" / "metrics.json"))
    assert [r["iteration"] for r in records if "total_loss" in r] == [1, 2, 3]
    evals = [r for r in records if r.get("dataset") == "Synthetic"]
    assert len(evals) == 1  # evaluated once, by rank 0
    assert "images/s" in logs["worker_0.log"] and "Evaluation results" in logs["worker_0.log"]
    assert "images/s" not in logs["worker_1.log"] and "Evaluation results" not in logs["worker_1.log"]
    assert "Rank 0 of 2" in (out / "rank0" / "log.txt").read_text()

    # The comm helpers, with rank-dependent inputs, agree on both ranks.
    expected = {"sum": [3.0, 1.0], "mean": [1.5], "max": [1.0, 0.0], "min": [0.0, -1.0],
                "gather": [[0, 1, 2], [100, 101, 102], [103, 104, 105]], "gather_dtype": "int64",
                "broadcast": [8, 1]}
    for r in (0, 1):
        got = info[r]["collectives"]
        assert {k: got[k] for k in expected} == expected
    assert info[0]["collectives"]["seed"] == info[1]["collectives"]["seed"]

    # The reducer averages: one step on half a batch per rank = one step on the whole batch.
    for r in (0, 1):
        step = info[r]["mean_gradient_step"]
        np.testing.assert_allclose(step["weight"], step["expected"], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_msrun_resume_from_different_checkpoints_fails_on_every_rank(trained_job, tmp_path):
    """Rank 0 finds its finished run in OUTPUT_DIR, rank 1 (as on another machine without
    the files) finds none: both stop with the same message instead of drifting apart."""
    root, _, out, _ = trained_job
    shutil.copytree(out / "rank0", tmp_path / "out" / "rank0")
    (tmp_path / "dump").mkdir()
    proc = _msrun(WORKER, [str(tmp_path / "dump"), str(tmp_path / "out"), "--resume",
                           *_tiny_opts(root / "data", ["SEED", "-1"])],
                  tmp_path / "msrun_log", timeout=300)
    assert proc.returncode != 0
    messages = []
    for name in ("worker_0.log", "worker_1.log"):
        lines = [line for line in _log(tmp_path / "msrun_log" / name).splitlines()
                 if line.startswith("train_net.py: error:")]
        assert len(lines) == 1, name
        messages.append(lines[0])
    # The same message (each names its OUTPUT_DIR, per rank only in this harness).
    assert len({re.sub(r"OUTPUT_DIR \S+", "OUTPUT_DIR <dir>", m) for m in messages}) == 1
    assert "rank 0: epoch 1, rank 1: epoch 0" in messages[0] and "share" in messages[0]


@pytest.mark.slow
def test_msrun_batch_device_mismatch_fails_every_rank_with_same_message(tmp_path):
    opts = _tiny_opts(tmp_path / "data", ["OUTPUT_DIR", str(tmp_path / "out"),
                                          "SOLVER.IMS_PER_BATCH", "12"])
    proc = _msrun(TRAIN_NET, opts, tmp_path / "msrun_log", timeout=120)
    assert proc.returncode != 0
    messages = []
    for name in ("scheduler.log", "worker_0.log", "worker_1.log"):
        lines = [line for line in _log(tmp_path / "msrun_log" / name).splitlines()
                 if line.startswith("train_net.py: error:")]
        assert len(lines) == 1, name
        messages.append(lines[0])
    assert len(set(messages)) == 1
    assert "SOLVER.IMS_PER_BATCH (12)" in messages[0] and "2 worker(s)" in messages[0]
    assert "Traceback" not in _log(tmp_path / "msrun_log" / "worker_0.log")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- shell scripts
def _script(name, args, cwd, **env):
    return subprocess.run(["bash", os.path.join(SCRIPTS, name), *args], cwd=cwd,
                          env=_clean_environ(**env), capture_output=True, text=True, timeout=60)


@pytest.fixture
def ascend_inputs(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "resnet50.ckpt").write_bytes(b"weights")
    (tmp_path / "model_final.ckpt").write_bytes(b"weights")
    config = tmp_path / "alignedpp.yml"
    config.write_text("SOLVER:\n  MAX_EPOCH: 2\n")
    table = {"version": "1.0", "server_count": "1", "status": "completed",
             "server_list": [{"server_id": "10.0.0.1", "host_nic_ip": "reserve",
                              "device": [{"device_id": str(i), "device_ip": f"192.98.92.{i}",
                                          "rank_id": str(i)} for i in range(8)]}]}
    (tmp_path / "rank_table_8pcs.json").write_text(json.dumps(table))
    return tmp_path


def _commands(stdout):
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def _python_part(tokens):
    """The tokens of the python command in '+ cd REPO && env A=1 ... python ... > log 2>&1'."""
    assert tokens[:3] == ["cd", REPO, "&&"] and tokens[3] == "env"
    i = tokens.index("python")
    return tokens[4:i], tokens[i:tokens.index(">")], tokens[tokens.index(">") + 1]


@pytest.mark.parametrize("name", ["run_train_ascend.sh", "run_singletrain_ascend.sh",
                                  "run_test_ascend.sh"])
def test_scripts_print_usage_on_missing_arguments(name, tmp_path):
    proc = _script(name, ["only_one"], tmp_path)
    assert proc.returncode == 1
    assert "got 1 argument(s)" in proc.stderr and f"Usage: bash {name}" in proc.stderr


def test_run_train_ascend_dry_run_one_process_per_device(ascend_inputs):
    d = ascend_inputs
    proc = _script("run_train_ascend.sh", ["dataset", "resnet50.ckpt", "rank_table_8pcs.json",
                                           "SOLVER.MAX_EPOCH", "120", "--dry-run"], d,
                   CONFIG_FILE=str(d / "alignedpp.yml"))
    assert proc.returncode == 0, proc.stderr
    commands = _commands(proc.stdout)
    assert len(commands) == 8
    for i, tokens in enumerate(commands):
        envs, cmd, log = _python_part(tokens)
        assert envs == [f"RANK_TABLE_FILE={d}/rank_table_8pcs.json", "RANK_SIZE=8",
                        f"RANK_ID={i}", f"DEVICE_ID={i}"]
        assert cmd == ["python", "tools/train_net.py", "--config-file", str(d / "alignedpp.yml"),
                       "DATASETS.ROOT", str(d / "dataset"), "MODEL.BACKBONE.PRETRAIN", "True",
                       "MODEL.BACKBONE.PRETRAIN_PATH", str(d / "resnet50.ckpt"),
                       "MODEL.DEVICE", "Ascend", "SOLVER.IMS_PER_BATCH", "256",
                       "SOLVER.MAX_EPOCH", "120"]
        assert log == f"{d}/device{i}/log"
    assert not (d / "device0").exists()
    # DRY_RUN=1 is the same as --dry-run.
    again = _script("run_train_ascend.sh", ["dataset", "resnet50.ckpt", "rank_table_8pcs.json",
                                            "SOLVER.MAX_EPOCH", "120"], d,
                    CONFIG_FILE=str(d / "alignedpp.yml"), DRY_RUN="1")
    assert again.stdout == proc.stdout
    # IMS_PER_DEVICE sets the per-device batch (the global batch is that x RANK_SIZE).
    proc = _script("run_train_ascend.sh", ["dataset", "resnet50.ckpt", "rank_table_8pcs.json",
                                           "--dry-run"], d, CONFIG_FILE=str(d / "alignedpp.yml"),
                   IMS_PER_DEVICE="64")
    cmd = _python_part(_commands(proc.stdout)[0])[1]
    assert cmd[cmd.index("SOLVER.IMS_PER_BATCH") + 1] == "512"


def test_run_train_ascend_checks_files_and_table(ascend_inputs):
    d = ascend_inputs
    cfg = {"CONFIG_FILE": str(d / "alignedpp.yml")}
    proc = _script("run_train_ascend.sh", ["dataset", "missing.ckpt", "rank_table_8pcs.json",
                                           "--dry-run"], d, **cfg)
    assert proc.returncode == 1 and f"PRETRAINED '{d}/missing.ckpt' is not a file" in proc.stderr
    proc = _script("run_train_ascend.sh", ["nodata", "resnet50.ckpt", "rank_table_8pcs.json",
                                           "--dry-run"], d, **cfg)
    assert proc.returncode == 1 and "DATA_ROOT" in proc.stderr and "not a directory" in proc.stderr
    (d / "bad.json").write_text("{}")
    proc = _script("run_train_ascend.sh", ["dataset", "resnet50.ckpt", "bad.json", "--dry-run"],
                   d, **cfg)
    assert proc.returncode == 1 and "is not an HCCL rank table" in proc.stderr
    proc = _script("run_train_ascend.sh", ["dataset", "resnet50.ckpt", "rank_table_8pcs.json",
                                           "SOLVER.MAX_EPOCH", "--dry-run"], d, **cfg)
    assert proc.returncode == 1 and "KEY VALUE pairs" in proc.stderr
    proc = _script("run_train_ascend.sh", ["dataset", "resnet50.ckpt", "rank_table_8pcs.json",
                                           "--dry-run"], d, CONFIG_FILE=str(d / "nope.yml"))
    assert proc.returncode == 1 and f"config file '{d}/nope.yml' not found" in proc.stderr


def test_run_train_ascend_two_server_table_needs_server_id(ascend_inputs):
    d = ascend_inputs
    table = json.loads((d / "rank_table_8pcs.json").read_text())
    second = {"server_id": "10.0.0.2", "host_nic_ip": "reserve",
              "device": [{"device_id": str(i), "device_ip": f"192.98.93.{i}",
                          "rank_id": str(8 + i)} for i in range(8)]}
    table["server_list"].append(second)
    table["server_count"] = "2"
    (d / "rank_table_16pcs.json").write_text(json.dumps(table))
    cfg = {"CONFIG_FILE": str(d / "alignedpp.yml")}
    args = ["dataset", "resnet50.ckpt", "rank_table_16pcs.json", "--dry-run"]
    proc = _script("run_train_ascend.sh", args, d, **cfg)
    assert proc.returncode == 1 and "lists 2 servers: set SERVER_ID" in proc.stderr
    proc = _script("run_train_ascend.sh", args, d, SERVER_ID="10.0.0.2", **cfg)
    assert proc.returncode == 0, proc.stderr
    envs = [_python_part(t)[0] for t in _commands(proc.stdout)]
    assert [e[1:] for e in envs] == [["RANK_SIZE=16", f"RANK_ID={8 + i}", f"DEVICE_ID={i}"]
                                     for i in range(8)]


def test_run_singletrain_and_test_ascend_dry_run(ascend_inputs):
    d = ascend_inputs
    cfg = {"CONFIG_FILE": str(d / "alignedpp.yml")}
    proc = _script("run_singletrain_ascend.sh", ["dataset", "resnet50.ckpt", "3", "--dry-run"],
                   d, **cfg)
    assert proc.returncode == 0, proc.stderr
    (tokens,) = _commands(proc.stdout)
    envs, cmd, log = _python_part(tokens)
    assert envs == ["-u", "RANK_TABLE_FILE", "-u", "MS_ROLE", "RANK_SIZE=1", "RANK_ID=0",
                    "DEVICE_ID=3"]
    assert cmd[:4] == ["python", "tools/train_net.py", "--config-file", str(d / "alignedpp.yml")]
    assert cmd[4:] == ["DATASETS.ROOT", str(d / "dataset"), "MODEL.BACKBONE.PRETRAIN", "True",
                       "MODEL.BACKBONE.PRETRAIN_PATH", str(d / "resnet50.ckpt"),
                       "MODEL.DEVICE", "Ascend"]
    assert log == f"{d}/train.log"
    proc = _script("run_singletrain_ascend.sh", ["dataset", "resnet50.ckpt", "npu0", "--dry-run"],
                   d, **cfg)
    assert proc.returncode == 1 and "DEVICE_ID must be a non-negative integer, got 'npu0'" in proc.stderr
    # Without CONFIG_FILE: the seed's single-card run (32 images = 8 ids x 4), not the 8-NPU one.
    proc = _script("run_singletrain_ascend.sh", ["dataset", "resnet50.ckpt", "0", "--dry-run"], d)
    assert proc.returncode == 0, proc.stderr
    (tokens,) = _commands(proc.stdout)
    _, cmd, _ = _python_part(tokens)
    assert cmd[3] == os.path.join(REPO, "configs", "Market1501", "alignedpp_R50_1card.yml")

    proc = _script("run_test_ascend.sh", ["dataset", "model_final.ckpt", "0", "--dry-run"], d, **cfg)
    assert proc.returncode == 0, proc.stderr
    (tokens,) = _commands(proc.stdout)
    envs, cmd, log = _python_part(tokens)
    assert envs[-1] == "DEVICE_ID=0" and log == f"{d}/test.log"
    assert cmd[4:] == ["--eval-only", "DATASETS.ROOT", str(d / "dataset"),
                       "MODEL.WEIGHTS", str(d / "model_final.ckpt"), "MODEL.DEVICE", "Ascend",
                       "TEST.RERANK.ENABLED", "True"]
    proc = _script("run_test_ascend.sh", ["dataset", "none.ckpt", "0", "--dry-run"], d, **cfg)
    assert proc.returncode == 1 and f"CHECKPOINT '{d}/none.ckpt' is not a file" in proc.stderr


FAKE_PYTHON = """#!{python}
import json, os, sys
if sys.argv[1:2] == ["-"]:  # the scripts' own helpers (rank-table parsing) run for real
    os.execv(sys.executable, [sys.executable] + sys.argv[1:])
names = ("RANK_TABLE_FILE", "RANK_SIZE", "RANK_ID", "DEVICE_ID", "MS_ROLE")
print(json.dumps({{"cwd": os.getcwd(), "argv": sys.argv[1:],
                  "env": {{k: os.environ.get(k) for k in names}}}}))
"""


def _fake_python(folder):
    path = folder / "fake_python"
    path.write_text(FAKE_PYTHON.format(python=sys.executable))
    path.chmod(0o755)
    return str(path)


def _wait_for_json(path, seconds=20.0):
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip().endswith("}"):
            return json.loads(path.read_text())
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written")


def test_scripts_really_start_the_processes(ascend_inputs):
    """Without --dry-run: the commands run from the repository root with the device's
    environment (a stand-in python records what it was given)."""
    d = ascend_inputs
    env = {"CONFIG_FILE": str(d / "alignedpp.yml"), "PYTHON": _fake_python(d)}
    proc = _script("run_train_ascend.sh", ["dataset", "resnet50.ckpt", "rank_table_8pcs.json"],
                   d, **env)
    assert proc.returncode == 0, proc.stderr
    assert "8 device(s) in the job" in proc.stdout and "tail -f" in proc.stdout
    for i in range(8):
        got = _wait_for_json(d / f"device{i}" / "log")
        assert got["cwd"] == REPO and got["argv"][0] == "tools/train_net.py"
        assert got["env"] == {"RANK_TABLE_FILE": str(d / "rank_table_8pcs.json"),
                              "RANK_SIZE": "8", "RANK_ID": str(i), "DEVICE_ID": str(i),
                              "MS_ROLE": None}
    # One device, waiting for the run (FOREGROUND=1); inherited cluster variables dropped.
    proc = _script("run_singletrain_ascend.sh", ["dataset", "resnet50.ckpt", "5"], d,
                   FOREGROUND="1", MS_ROLE="MS_WORKER", RANK_TABLE_FILE="/x.json", **env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads((d / "train.log").read_text())
    assert got["env"] == {"RANK_TABLE_FILE": None, "RANK_SIZE": "1", "RANK_ID": "0",
                          "DEVICE_ID": "5", "MS_ROLE": None}
    assert got["argv"][-2:] == ["MODEL.DEVICE", "Ascend"]


def test_run_distributed_msrun_dry_run_and_checks(ascend_inputs):
    d = ascend_inputs
    cfg = {"CONFIG_FILE": str(d / "alignedpp.yml")}
    proc = _script("run_distributed_msrun.sh", ["--worker_num", "2", "--device", "CPU",
                                                "DATASETS.ROOT", "/data", "--dry-run"], d, **cfg)
    assert proc.returncode == 0, proc.stderr
    (tokens,) = _commands(proc.stdout)
    assert tokens[:3] == ["cd", REPO, "&&"]
    assert tokens[3:] == ["msrun", "--worker_num=2", "--local_worker_num=2",
                          "--master_addr=127.0.0.1", "--master_port=8118",
                          f"--log_dir={d}/msrun_log", "--join=True", "tools/train_net.py",
                          "--config-file", str(d / "alignedpp.yml"), "MODEL.DEVICE", "CPU",
                          "DATASETS.ROOT", "/data"]
    proc = _script("run_distributed_msrun.sh", ["--worker_num", "4", "--ims_per_device", "32",
                                                "--dry-run"], d, **cfg)
    (tokens,) = _commands(proc.stdout)
    assert tokens[-2:] == ["SOLVER.IMS_PER_BATCH", "128"]
    multi = ["--worker_num", "16", "--local_worker_num", "8", "--master_addr", "192.168.1.10",
             "--master_port", "9000", "--node_rank", "1", "--dry-run"]
    proc = _script("run_distributed_msrun.sh", multi, d, **cfg)
    assert proc.returncode == 0, proc.stderr
    (tokens,) = _commands(proc.stdout)
    assert tokens[3:9] == ["msrun", "--worker_num=16", "--local_worker_num=8",
                           "--master_addr=192.168.1.10", "--master_port=9000", "--node_rank=1"]
    bad = {
        "needs --master_addr set to machine 0's address": ["--worker_num", "16",
                                                           "--local_worker_num", "8"],
        "--node_rank 2 is out of range": ["--worker_num", "16", "--local_worker_num", "8",
                                          "--master_addr", "10.1.1.1", "--node_rank", "2"],
        "cannot exceed --worker_num": ["--worker_num", "2", "--local_worker_num", "4"],
        "--device must be CPU, GPU or Ascend, got 'TPU'": ["--device", "TPU"],
        "--master_port must be within 1024-65535": ["--master_port", "80"],
        "unknown option --workers": ["--workers", "2"],
        "KEY VALUE pairs": ["DATASETS.ROOT"],
        "--worker_num must be a non-negative integer, got 'x'": ["--worker_num", "x"],
        "--ims_per_device must be a non-negative integer": ["--ims_per_device", "8x4"],
    }
    for message, args in bad.items():
        proc = _script("run_distributed_msrun.sh", [*args, "--dry-run"], d, **cfg)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert "Usage: bash run_distributed_msrun.sh" in proc.stderr


# ----------------------------------------------------------------------------- ModelArts
def _load_modelarts():
    return load_script("tools/modelarts_train.py", "modelarts_train_under_test")


class FakeMox:
    """``moxing`` with ``file.copy_parallel / copy / exists / is_directory`` over a local
    folder standing for OBS (obs://bucket/x -> <root>/bucket/x); records every copy."""

    def __init__(self, root):
        self.root = str(root)
        self.calls = []
        self.file = types.SimpleNamespace(copy_parallel=self.copy_parallel, copy=self.copy,
                                          exists=lambda u: os.path.exists(self._local(u)),
                                          is_directory=lambda u: os.path.isdir(self._local(u)))

    def _local(self, url):
        return os.path.join(self.root, url[len("obs://"):]) if url.startswith("obs://") else url

    def copy_parallel(self, src, dst):
        self.calls.append(("copy_parallel", src, dst))
        shutil.copytree(self._local(src), self._local(dst), dirs_exist_ok=True)

    def copy(self, src, dst):
        self.calls.append(("copy", src, dst))
        os.makedirs(os.path.dirname(self._local(dst)), exist_ok=True)
        shutil.copyfile(self._local(src), self._local(dst))


@pytest.fixture
def obs(tmp_path, clean_env):
    root = tmp_path / "obs"
    (root / "aligned" / "data" / "market1501" / "query").mkdir(parents=True)
    (root / "aligned" / "data" / "market1501" / "query" / "0001_c1s1_000151_00.jpg").write_bytes(b"j")
    (root / "aligned" / "premodels").mkdir(parents=True)
    (root / "aligned" / "premodels" / "resnet50_imagenet.ckpt").write_bytes(b"w")
    (root / "aligned" / "models").mkdir(parents=True)
    (root / "aligned" / "models" / "resnet50-300_23.ckpt").write_bytes(b"m")
    (root / "aligned" / "models" / "other.ckpt").write_bytes(b"o")
    mox = FakeMox(root)
    clean_env.setitem(sys.modules, "moxing", mox)
    return root, mox, tmp_path / "cache"


def test_modelarts_without_moxing_fails_clearly(clean_env, capsys):
    modelarts = _load_modelarts()
    clean_env.setitem(sys.modules, "moxing", None)  # import moxing -> ImportError
    code = modelarts.main(["--data_url=obs://b/data/", "--train_url=obs://b/out/"],
                          run_training=lambda argv: pytest.fail("must not train"))
    assert code == 2
    err = capsys.readouterr().err
    assert "moxing (ModelArts' OBS client) is not importable" in err
    assert "tools/train_net.py with local paths" in err


def test_modelarts_copies_in_trains_and_copies_out(obs):
    root, mox, cache = obs
    modelarts = _load_modelarts()
    seen = {}

    def fake_training(argv):
        seen["argv"] = argv
        assert mox.calls, "inputs must be copied before training"
        # The overrides must be keys train_net.py accepts.
        args = modelarts.load_train_net().default_argument_parser().parse_args(argv)
        from fastreid_ms.engine import setup_cfg
        seen["cfg"] = setup_cfg(args)
        out = seen["cfg"].OUTPUT_DIR
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "model_final.ckpt"), "w") as f:
            f.write("trained")
        return 0

    config = cache.parent / "job.yml"
    config.write_text("SOLVER:\n  MAX_EPOCH: 7\n")
    code = modelarts.main(["--data_url=obs://aligned/data/", "--train_url=obs://aligned/output/",
                           "--pre_trained=obs://aligned/premodels/", "--run_modelarts=True",
                           f"--cache_dir={cache}", "--device=CPU", "--num_gpus=1",
                           f"--config-file={config}",
                           "--opts=SOLVER.MAX_EPOCH 3", "SOLVER.BASE_LR", "0.01"],
                          run_training=fake_training)
    assert code == 0
    cfg = seen["cfg"]
    assert cfg.DATASETS.ROOT == str(cache / "data")
    assert (cache / "data" / "market1501" / "query" / "0001_c1s1_000151_00.jpg").is_file()
    assert cfg.MODEL.BACKBONE.PRETRAIN is True
    assert cfg.MODEL.BACKBONE.PRETRAIN_PATH == str(cache / "pretrained" / "resnet50_imagenet.ckpt")
    assert cfg.OUTPUT_DIR == str(cache / "output") and cfg.MODEL.DEVICE == "CPU"
    assert cfg.SOLVER.MAX_EPOCH == 3 and cfg.SOLVER.BASE_LR == 0.01
    assert seen["argv"][:2] == ["--config-file", str(config)]
    assert (root / "aligned" / "output" / "model_final.ckpt").read_text() == "trained"
    assert mox.calls[-1] == ("copy_parallel", str(cache / "output"), "obs://aligned/output/")


def test_modelarts_copies_output_even_when_training_fails(obs):
    root, mox, cache = obs
    modelarts = _load_modelarts()

    def failing(argv):
        out = cache / "output"
        out.mkdir(parents=True)
        (out / "log.txt").write_text("loss nan")
        raise RuntimeError("device lost")

    with pytest.raises(RuntimeError, match="device lost"):
        modelarts.main(["--data_url=obs://aligned/data", "--train_url=obs://aligned/out",
                        f"--cache_dir={cache}"], run_training=failing)
    assert (root / "aligned" / "out" / "log.txt").read_text() == "loss nan"
    code = modelarts.main(["--data_url=obs://aligned/data", "--train_url=obs://aligned/out2",
                           f"--cache_dir={cache}"], run_training=lambda argv: 3)
    assert code == 3 and (root / "aligned" / "out2" / "log.txt").is_file()


def test_modelarts_eval_only_picks_named_checkpoint(obs, capsys):
    root, mox, cache = obs
    modelarts = _load_modelarts()
    seen = {}
    base = ["--data_url=obs://aligned/data", "--train_url=obs://aligned/out",
            f"--cache_dir={cache}", "--eval-only", "--checkpoint_url=obs://aligned/models/"]
    # Two checkpoints in the folder and no name: which one is ambiguous.
    code = modelarts.main(base, run_training=lambda argv: pytest.fail("must not run"))
    assert code == 2
    assert "holds 2 checkpoint files ['other.ckpt', 'resnet50-300_23.ckpt']" in capsys.readouterr().err
    code = modelarts.main(base + ["--modelarts_ckpt_name=resnet50-300_23.ckpt"],
                          run_training=lambda argv: seen.setdefault("argv", argv) and 0)
    assert code == 0
    argv = seen["argv"]
    assert argv[:2] == ["--config-file", os.path.join(REPO, "configs", "Market1501",
                                                      "alignedpp_R50.yml")]
    assert "--eval-only" in argv and "MODEL.BACKBONE.PRETRAIN" not in argv
    assert argv[argv.index("MODEL.WEIGHTS") + 1] == str(cache / "checkpoint" / "resnet50-300_23.ckpt")


def test_modelarts_other_devices_wait_for_the_copy(obs, clean_env, capsys):
    root, mox, cache = obs
    modelarts = _load_modelarts()
    obs_args = ["--data_url=obs://aligned/data", "--train_url=obs://aligned/out",
                "--pre_trained=obs://aligned/premodels/resnet50_imagenet.ckpt",
                f"--cache_dir={cache}", "--copy_timeout=0.2"]
    clean_env.setenv("RANK_TABLE_FILE", "/user/config/jobstart_hccl.json")
    clean_env.setenv("RANK_SIZE", "8")

    def as_device(i):
        clean_env.setenv("DEVICE_ID", str(i))
        clean_env.setenv("RANK_ID", str(i))

    as_device(1)
    code = modelarts.main(obs_args, run_training=lambda argv: pytest.fail("must not run"))
    assert code == 2 and modelarts.COPY_DONE_MARKER in capsys.readouterr().err
    assert mox.calls == []
    seen = []

    def fake_training(argv):
        seen.append(argv)
        (cache / "output").mkdir(exist_ok=True)
        return 0

    as_device(0)
    assert modelarts.main(obs_args, run_training=fake_training) == 0
    assert [c[0] for c in mox.calls] == ["copy_parallel", "copy", "copy_parallel"]
    assert mox.calls[-1][1:] == (str(cache / "output"), "obs://aligned/out")  # rank 0 copies out
    as_device(1)
    assert modelarts.main(obs_args, run_training=fake_training) == 0
    assert len(mox.calls) == 3  # device 1 copied nothing in, and nothing out (not rank 0)
    # A record left by a job with other inputs is not taken for this job's.
    code = modelarts.main([*obs_args[:2], f"--cache_dir={cache}", "--copy_timeout=0.2"],
                          run_training=lambda argv: pytest.fail("must not run"))
    assert code == 2 and "never recorded them" in capsys.readouterr().err
    assert seen[0] == seen[1]
    assert seen[0][seen[0].index("MODEL.BACKBONE.PRETRAIN_PATH") + 1] == str(
        cache / "pretrained" / "resnet50_imagenet.ckpt")
