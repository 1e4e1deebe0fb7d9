import os
import subprocess
import sys

from fastreid_ms.utils import env


def test_cpu_isa_capped_on_avx512_when_unset(monkeypatch):
    monkeypatch.delenv(env.ONEDNN_ISA_VAR, raising=False)
    monkeypatch.setattr(env, "cpu_has_avx512", lambda: True)
    msg = env.configure_cpu_isa()
    assert os.environ[env.ONEDNN_ISA_VAR] == "AVX2" and "AVX-512" in msg
    assert env.CPU_ISA_NOTE["message"] == msg


def test_cpu_isa_user_value_kept(monkeypatch):
    monkeypatch.setenv(env.ONEDNN_ISA_VAR, "AVX512_CORE")
    monkeypatch.setattr(env, "cpu_has_avx512", lambda: True)
    assert "set by the user" in env.configure_cpu_isa()
    assert os.environ[env.ONEDNN_ISA_VAR] == "AVX512_CORE"


def test_cpu_isa_untouched_without_avx512(monkeypatch):
    monkeypatch.delenv(env.ONEDNN_ISA_VAR, raising=False)
    monkeypatch.setattr(env, "cpu_has_avx512", lambda: False)
    env.configure_cpu_isa()
    assert env.ONEDNN_ISA_VAR not in os.environ


def test_device_names(monkeypatch):
    monkeypatch.delenv("FASTREID_DEVICE", raising=False)
    assert env.resolve_device("cpu") == "CPU" and env.resolve_device("npu") == "Ascend"
    monkeypatch.setenv("FASTREID_DEVICE", "gpu")
    assert env.resolve_device("CPU") == "GPU"
    try:
        env.normalize_device("tpu")
    except ValueError as exc:
        assert "MODEL.DEVICE" in str(exc)
    else:
        raise AssertionError("unknown device accepted")


def test_first_tensor_op_prints_no_numpy_abi_traceback():
    code = ("import fastreid_ms, numpy as np, mindspore as ms\n"
            "x = ms.Tensor(np.ones((2, 3), np.float32))\n"
            "print(float((x * 2).sum().asnumpy()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("12.0")
    combined = out.stdout + out.stderr
    assert "NumPy 1.x" not in combined and "Traceback" not in combined


def test_atomic_files_get_the_normal_mode(tmp_path):
    from fastreid_ms.utils.file_io import atomic_path, atomic_write_text, default_file_mode
    old = os.umask(0o022)
    try:
        atomic_write_text(str(tmp_path / "a.txt"), "hello")
        with atomic_path(str(tmp_path / "b.bin")) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x")
            os.chmod(tmp, 0o400)  # as MindSpore leaves its checkpoints
        assert default_file_mode() == 0o644
        for name in ("a.txt", "b.bin"):
            assert (os.stat(tmp_path / name).st_mode & 0o777) == 0o644
        assert (tmp_path / "a.txt").read_text() == "hello"
        # a failing writer leaves the previous content and no temporary file
        try:
            with atomic_path(str(tmp_path / "a.txt")) as tmp:
                with open(tmp, "w") as f:
                    f.write("half")
                raise RuntimeError("crash")
        except RuntimeError:
            pass
        assert (tmp_path / "a.txt").read_text() == "hello"
        assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin"]
    finally:
        os.umask(old)
