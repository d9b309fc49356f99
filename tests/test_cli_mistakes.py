"""The table of issue 12, row by row: a user's mistake never costs a finished run, never ends in a traceback, and
never trains on bad data. Each test runs the real ``tinyconv`` command in a subprocess (exit status, stdout,
stderr as a user sees them) on generated MNIST-format files, with tiny settings."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import data_root  # noqa: F401  (the module-scoped fixture: full-size generated IDX files)

import tinyconv as tc

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, env=None, timeout=240):
    """``python -m tinyconv ARGS`` -> CompletedProcess (text)."""
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "tinyconv", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=timeout)


def tiny(root, out, *extra, epochs=1):
    return ["train", "--data", root, "--custom-data", "--out", out, "--limit", "128", "--test-limit", "100",
            "--epochs", str(epochs), "--batch-size", "64", "--lr", "3e-3", "--no-progress", *extra]


def no_traceback(r):
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    return True


@pytest.fixture(scope="module")
def finished(data_root, tmp_path_factory):  # noqa: F811
    """A finished 1-epoch run: (folder, the checkpoint's bytes)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    r = run(*tiny(data_root, out))
    assert r.returncode == 0, r.stderr
    return out, (out / "checkpoint.npz").read_bytes()


# ------------------------------------------------------------------ a finished run is never destroyed by accident
def test_training_again_into_a_finished_run_refuses_and_names_eval_force_and_out(data_root, finished):  # noqa: F811
    """A complete run cannot be resumed, so the refusal names what does work: eval, --force, --out."""
    out, before = finished
    r = run(*tiny(data_root, out))
    assert r.returncode == 2 and no_traceback(r)
    assert "already holds a complete run (1/1 epochs, test accuracy" in r.stderr
    assert f"tinyconv eval {out / 'checkpoint.npz'}" in r.stderr and "--force" in r.stderr and "--out" in r.stderr
    assert "--resume" not in r.stderr
    assert (out / "checkpoint.npz").read_bytes() == before


def test_force_starts_over(data_root, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    assert run(*tiny(data_root, out)).returncode == 0
    (out / "checkpoint.npz").write_bytes(b"damaged")  # even a damaged run is protected...
    r = run(*tiny(data_root, out))
    assert r.returncode == 2 and "a run whose checkpoint cannot be read" in r.stderr
    r = run(*tiny(data_root, out, "--force"))  # ...until --force
    assert r.returncode == 0 and no_traceback(r)
    assert "--force: deleted the previous run's checkpoint.npz, metrics.csv" in r.stderr
    assert tc.load(out / "checkpoint.npz")["complete"]


def test_resume_of_a_completed_run_says_so_and_changes_nothing(data_root, finished):  # noqa: F811
    out, before = finished
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = run("train", "--out", out, "--resume", "--data", data_root, "--custom-data", "--no-progress")
    assert r.returncode == 0 and no_traceback(r)
    assert "holds a complete run (1/1 epochs" in r.stderr and "nothing changed" in r.stderr  # a notice: stderr
    assert "wrote" not in r.stdout + r.stderr and "resuming" not in r.stdout + r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert (out / "checkpoint.npz").read_bytes() == before


def test_resume_looks_in_the_folder_the_other_options_name(data_root, tmp_path):  # noqa: F811
    """--recipe d2l --resume looks in runs/lenet-d2l, where '--recipe d2l' trains, not in runs/lenet."""
    common = ["--data", data_root, "--custom-data", "--limit", "128", "--test-limit", "100", "--epochs", "1",
              "--no-progress"]
    r = run("train", "--recipe", "d2l", "--resume", *common, cwd=tmp_path)
    assert r.returncode == 2 and no_traceback(r)
    assert "no run to resume in runs/lenet-d2l" in r.stderr
    assert run("train", "--recipe", "d2l", *common, cwd=tmp_path).returncode == 0
    assert (tmp_path / "runs" / "lenet-d2l" / "checkpoint.npz").exists()
    assert not (tmp_path / "runs" / "lenet").exists()
    r = run("train", "--recipe", "d2l", "--resume", *common, cwd=tmp_path)
    assert r.returncode == 0 and "runs/lenet-d2l holds a complete run" in r.stderr


# ------------------------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("flag", [["--lr", "1e30"], ["--lr", "inf"], ["--lr", "nan"], ["--lr", "0"],
                                  ["--momentum", "1e9"], ["--weight-decay", "1e9"], ["--batch-size", "1e3"]])
def test_absurd_hyperparameters_are_usage_errors_before_anything_runs(tmp_path, flag):
    r = run("train", *flag, "--out", tmp_path / "run")
    assert r.returncode == 2 and no_traceback(r)
    assert f"argument {flag[0]}: expected" in r.stderr
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_exit_1_and_writes_no_nan_checkpoint(data_root, tmp_path):  # noqa: F811
    """A learning rate inside the accepted range that still blows up (SGD lr 10, momentum 0.99)."""
    out = tmp_path / "run"
    r = run(*tiny(data_root, out, "--limit", "640", "--optimizer", "sgd", "--lr", "10", "--momentum", "0.99",
                  "--schedule", "none", epochs=3))
    assert r.returncode == 1 and no_traceback(r), r.stdout
    assert "training diverged in epoch" in r.stderr and "probably too high" in r.stderr
    assert "RuntimeWarning" not in r.stderr
    if (out / "checkpoint.npz").exists():  # an earlier epoch finished: its checkpoint is kept, and finite
        assert "kept the last good checkpoint" in r.stderr
        state = tc.load(out / "checkpoint.npz")
        assert all(np.isfinite(v.numpy()).all() for v in state["model"].values())
    else:
        assert "no checkpoint had been written yet" in r.stderr


# ----------------------------------------------------------------------------------- bad flags and paths
def test_an_unknown_kernel_is_a_usage_error(tmp_path):
    for cmd in (["train", "--out", tmp_path / "r"], ["summary"], ["eval", tmp_path / "x.npz"]):
        r = run(*cmd, "--kernel", "bogus")
        assert r.returncode == 2 and no_traceback(r)
        assert "argument --kernel: unknown conv kernel 'bogus'; valid kernels: 'direct', 'im2col', 'numba'" in r.stderr


def test_out_that_is_a_file_or_unwritable_fails_before_loading_data(tmp_path):
    (tmp_path / "file").write_text("x")
    r = run("train", "--out", tmp_path / "file", "--data", tmp_path / "nodata", "--custom-data")
    assert r.returncode == 2 and no_traceback(r)
    assert "--out" in r.stderr and "is a file, not a folder" in r.stderr
    r = run("train", "--out", tmp_path / "file" / "sub", "--data", tmp_path / "nodata", "--custom-data")
    assert r.returncode == 2 and no_traceback(r) and "cannot write there" in r.stderr
    ro = Path("/proc/self") if os.geteuid() == 0 else tmp_path / "ro"
    if ro != Path("/proc/self"):
        ro.mkdir(mode=0o500)
    r = run("train", "--out", ro, "--data", tmp_path / "nodata", "--custom-data")
    assert r.returncode == 2 and no_traceback(r) and "cannot write there" in r.stderr
    assert not (tmp_path / "nodata").exists()  # refused before any data was looked at


def test_data_that_is_a_file_or_unwritable(tmp_path):
    (tmp_path / "file").write_text("x")
    for cmd in (["train", "--out", tmp_path / "run"], ["eval", tmp_path / "x.npz"]):
        r = run(*cmd, "--data", tmp_path / "file")
        assert r.returncode == 2 and no_traceback(r) and "is a file, not a folder" in r.stderr
    ro = Path("/proc/self") if os.geteuid() == 0 else tmp_path / "ro"
    if ro != Path("/proc/self"):
        ro.mkdir(mode=0o500)
    r = run("train", "--out", tmp_path / "run", "--data", ro, env={"TINYCONV_MNIST_MIRRORS": ""})
    assert r.returncode == 1 and no_traceback(r) and "not writable" in r.stderr
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.parametrize("pixels", ["28", "29", "100"])
def test_augment_larger_than_the_image_is_a_usage_error(tmp_path, pixels):
    r = run("train", "--augment", pixels, "--out", tmp_path / "run")
    assert r.returncode == 2 and no_traceback(r)
    assert f"argument --augment: expected an integer in 0..27, got {pixels}" in r.stderr


# ------------------------------------------------------------------------------------- damaged checkpoints
@pytest.mark.parametrize("damage", ["no tree", "no variant", "variant is a number", "epoch is text",
                                    "wrong weight shape"])
def test_a_checkpoint_with_damaged_metadata_is_one_line_in_eval_and_resume(data_root, finished, tmp_path,  # noqa: F811
                                                                           damage):
    import json
    import zipfile

    out, before = finished
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / "checkpoint.npz"
    path.write_bytes(before)
    state = tc.load(path)
    if damage == "no tree":  # the JSON lost its key: edit the raw member
        with zipfile.ZipFile(path) as z:
            members = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
        meta = json.loads(members["__tinyconv__"].tobytes())
        del meta["tree"]
        members["__tinyconv__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(path, **members)
    else:
        if damage == "no variant":
            del state["config"]["variant"]
        elif damage == "variant is a number":
            state["config"]["variant"] = 5
        elif damage == "no epoch":
            del state["epoch"]
        elif damage == "epoch is text":
            state["epoch"] = "one"
        elif damage == "weights are text":
            state["model"]["conv1.weight"] = "w"
        elif damage == "wrong weight shape":
            state["model"]["conv1.weight"] = tc.zeros(3, 3)
        elif damage == "history rows wrong":
            state["history"] = [{"epoch": 1}]
        tc.save(state, path)
    for cmd in (["eval", path, "--data", data_root, "--custom-data", "--test-limit", "100"],
                ["train", "--out", run_dir, "--resume", "--data", data_root, "--custom-data", "--no-progress"]):
        r = run(*cmd)
        assert r.returncode == 1 and no_traceback(r), (damage, cmd[0], r.stderr)
        assert str(path) in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ------------------------------------------------------------------------------------------------ pipes, Ctrl-C
def test_a_closed_stdout_is_quiet_and_the_printed_epoch_is_saved(data_root, tmp_path):  # noqa: F811
    """``tinyconv train | head -n 3``: no BrokenPipeError traceback; every epoch line printed is on disk."""
    out = tmp_path / "run"
    e = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "tinyconv", *map(str, tiny(data_root, out, epochs=3))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    lines = [proc.stdout.readline() for _ in range(3)]  # the LeNet line, the data line, epoch 1
    proc.stdout.close()  # what head does after its lines
    err = proc.stderr.read()
    rc = proc.wait(timeout=240)
    assert lines[2].startswith("epoch 1/3"), lines
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert rc in (0, 1)  # 1: stopped at the closed pipe; 0 only if it printed everything before the close
    state = tc.load(out / "checkpoint.npz")
    assert state["epoch"] >= 1  # the epoch that was printed was saved first


def test_ctrl_c_exits_130_and_says_what_was_kept(data_root, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    e = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "tinyconv", *map(str, tiny(data_root, out, "--limit", "6400", epochs=2))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    assert proc.stdout.readline().startswith("LeNet")
    assert proc.stdout.readline().startswith("data:")  # printed once the data is loaded, just before training
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert "checkpoint saved to" in stderr or "interrupted" in stderr
    if "checkpoint saved to" in stderr:
        assert "resume with: tinyconv train --out" in stderr and tc.load(out / "checkpoint.npz")["batch"] >= 1


def test_the_command_alone_lists_its_commands():
    r = run()
    assert r.returncode == 0 and no_traceback(r)
    for command in ("train", "eval", "summary"):
        assert command in r.stdout
    assert "usage: tinyconv" in r.stdout


def test_training_again_into_an_unfinished_run_names_resume(data_root, tmp_path, capsys):  # noqa: F811
    from tinyconv import cli

    out = tmp_path / "run"

    def stop(trainer, epoch, batch):
        trainer.request_stop()

    assert cli.cmd_train(cli.build_parser().parse_args([str(a) for a in tiny(data_root, out)]), callback=stop) == 130
    r = run(*tiny(data_root, out))
    assert r.returncode == 2 and no_traceback(r)
    assert "an unfinished run" in r.stderr and "--resume" in r.stderr and "--force" in r.stderr
