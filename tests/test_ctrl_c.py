"""Ctrl-C at any instant of the ``tinyconv`` command: exit status 130, no traceback, one line saying what was kept,
nothing half-written; while training the first Ctrl-C is acknowledged at once and a second one stops at once, even
while a kernel compiles; no Ctrl-C is lost.

Each run starts the command as its entry point does (``tinyconv_launcher.main``) in a subprocess and sends SIGINT
at a chosen instant, counted from the moment the launcher's watcher thread runs (before that, Python itself is
still starting, and its own default applies).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import data_root  # noqa: F401  (module-scoped fixture: generated MNIST-format files)

import tinyconv as tc
from tinyconv.files import atomic_write

REPO = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from tinyconv_launcher import main; sys.exit(main())"
#: every line the command may print on stderr when interrupted (the compile notice and its summary aside)
KNOWN = ("interrupted", "stopping after this batch; Ctrl-C again to stop now", "resume with: tinyconv train",
         "compiling kernels", "compiled ")
#: A hang guard, not a timing: the acknowledgement comes at once (well under 0.5 s on an idle machine), while the
#: batch it interrupts (a first batch compiling its kernels) takes far longer than this on any machine.
ACK_LIMIT = 5.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc to see the launcher up")


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def start(*args, env=None):
    """The command in a subprocess, returned once its Ctrl-C watcher runs."""
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)
    deadline = time.monotonic() + 30
    while _threads(proc.pid) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    return proc


def train_args(data, out, *extra):
    # enough batches that every instant below falls before the run ends, even on a fast machine with a warm cache
    return ["train", "--data", data, "--custom-data", "--out", out, "--limit", "25600", "--test-limit", "500",
            "--epochs", "3", "--batch-size", "64", "--no-progress", *extra]


def check_interrupted(proc, out=None, timeout=120):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and "Error" not in stderr and "Exception" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith(KNOWN) for line in lines), stderr
    assert sum(line.startswith("interrupted") for line in lines) == 1, stderr  # one line says what was kept
    if out is not None and out.exists():
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # nothing half-written
        if (out / "checkpoint.npz").exists():
            tc.load(out / "checkpoint.npz")
    return stdout, stderr


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.01, 0.03, 0.08, 0.15, 0.3, 0.6, 1.0, 1.6])
def test_ctrl_c_at_any_instant(data_root, tmp_path, delay):  # noqa: F811
    """From the first import through loading data to the first batches: 130, one line, no traceback."""
    out = tmp_path / "run"
    proc = start(*train_args(data_root, out))
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    check_interrupted(proc, out)


def _read_until(stream, text: str, limit: float) -> tuple[str, float]:
    """Lines of ``stream`` up to the first holding ``text``, and how long that took."""
    t0, seen = time.monotonic(), ""
    while text not in seen and time.monotonic() - t0 < limit:
        line = stream.readline()
        if not line:
            break
        seen += line
    return seen, time.monotonic() - t0


def test_first_ctrl_c_acknowledged_at_once_and_checkpoint_saved(data_root, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    proc = start(*train_args(data_root, out))
    assert proc.stdout.readline().startswith("LeNet")
    assert proc.stdout.readline().startswith("data:")  # training starts right after this line
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    seen, waited = _read_until(proc.stderr, "stopping after this batch", 60)
    assert "stopping after this batch; Ctrl-C again to stop now" in seen and waited < ACK_LIMIT, (seen, waited)
    _, stderr = check_interrupted(proc, out)
    if "checkpoint saved to" in stderr:  # the Ctrl-C came after a batch: resumable from there
        assert tc.load(out / "checkpoint.npz")["batch"] >= 1 and "resume with:" in stderr


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"), reason="nothing compiles without the JIT")
def test_second_ctrl_c_stops_at_once_while_kernels_compile(data_root, tmp_path):  # noqa: F811
    """An empty numba cache: the first batch compiles for many seconds, inside C calls; the acknowledgement and
    the second Ctrl-C act at once all the same."""
    out = tmp_path / "run"
    proc = start(*train_args(data_root, out), env={"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")})
    assert proc.stdout.readline().startswith("LeNet")
    assert proc.stdout.readline().startswith("data:")
    proc.send_signal(signal.SIGINT)
    seen, waited = _read_until(proc.stderr, "stopping after this batch", 60)
    assert "stopping after this batch" in seen and waited < ACK_LIMIT, (seen, waited)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = check_interrupted(proc, out)
    assert time.monotonic() - t0 < ACK_LIMIT
    if "checkpoint saved to" not in stderr:  # (the first batch had not finished compiling: the usual case)
        assert "interrupted: no checkpoint was written yet" in stderr
        assert not (out / "checkpoint.npz").exists()


def test_a_burst_of_ctrl_c_is_never_lost(data_root, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    proc = start(*train_args(data_root, out))
    proc.stdout.readline()
    proc.stdout.readline()
    for _ in range(5):
        proc.send_signal(signal.SIGINT)
    check_interrupted(proc, out)


@pytest.mark.parametrize("delay", [0.05, 0.5, 1.5])
def test_ctrl_c_during_eval(data_root, tmp_path, delay):  # noqa: F811
    out = tmp_path / "run"
    args = ["train", "--data", data_root, "--custom-data", "--out", out, "--limit", "256", "--test-limit", "100",
            "--epochs", "1", "--no-progress"]
    trained = subprocess.run([sys.executable, "-c", ENTRY, *map(str, args)], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert trained.returncode == 0, trained.stderr
    before = (out / "checkpoint.npz").read_bytes()
    proc = start("eval", out / "checkpoint.npz", "--data", data_root, "--custom-data")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal landed: nothing to check but that it finished
        return
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert (out / "checkpoint.npz").read_bytes() == before


def test_stopping_at_once_leaves_no_half_written_file(tmp_path):
    """A stop in the middle of a write (a checkpoint, a metrics file): the temporary file goes, the target stays
    as it was."""
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"the previous checkpoint")
    script = (
        "import sys\n"
        "from tinyconv.files import atomic_write\n"
        "from tinyconv_launcher import Interrupts\n"
        f"with atomic_write({str(target)!r}) as f:\n"
        "    f.write(b'half of a new one')\n"
        "    f.flush()\n"
        "    Interrupts().stop_now()\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 130 and r.stderr.strip() == "interrupted: nothing was written", r.stderr
    assert target.read_bytes() == b"the previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_stopping_while_tinyconv_files_is_half_imported():
    """A Ctrl-C that lands while tinyconv.files is being imported (in sys.modules, not yet complete) still ends the
    process with its one line: no traceback from the watcher thread, which would then be gone."""
    script = (
        "import sys, types\n"
        "from tinyconv_launcher import Interrupts\n"
        "sys.modules['tinyconv.files'] = types.ModuleType('tinyconv.files')  # as during its import\n"
        "Interrupts().stop_now()\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 130 and r.stderr.strip() == "interrupted: nothing was written", r.stderr


def test_a_ctrl_c_before_the_graceful_span_is_passed_on():
    """A Ctrl-C counted just before training starts still stops training (it is not lost in between)."""
    from tinyconv_launcher import Interrupts

    interrupts, asked = Interrupts(), []
    interrupts.count = 1  # as if the watcher had counted one while the graceful span was not yet open
    with interrupts.graceful(lambda: asked.append(True)):
        pass
    assert asked == [True]


def test_atomic_write_registers_its_temporary_until_done(tmp_path):
    from tinyconv import files

    with atomic_write(tmp_path / "a.txt", "w") as f:
        f.write("x")
        (tmp,) = files._IN_PROGRESS
        assert Path(tmp).parent == tmp_path and Path(tmp).exists()
    assert not files._IN_PROGRESS and (tmp_path / "a.txt").read_text() == "x"
