"""Writing files so that a crash never leaves half of one: the single atomic-write helper of tinyconv.

``tc.save`` (checkpoints), the IDX writer and the MNIST downloader (data cache), ``metrics.csv`` and
``curves.png`` all go through :func:`atomic_write`: the bytes go to a temporary file in the target's folder, which
is flushed, fsync'ed and renamed over the target with ``os.replace`` (atomic on one filesystem). A reader sees the
old file or the new one, never a mixture; a process killed mid-write leaves the old file in place.

The temporary file is named ``.<name>.<pid>-<random>.tmp``. One left behind by a killed process (SIGKILL, power
loss: no ``finally`` runs) is removed by the next write to the same target, once its process is gone.

Standard library only: the data layer, the lowest one, uses it too.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "remove_stale_temporaries", "remove_temporaries_in_progress"]

#: The temporary files of the writes in progress in this process: a process that must end at once (the
#: ``tinyconv`` command on a second Ctrl-C) removes them first, so that it leaves no half-written file.
_IN_PROGRESS: set[str] = set()


def remove_temporaries_in_progress() -> None:
    """Delete the temporary files of this process's unfinished writes (their targets stay as they were)."""
    for tmp in list(_IN_PROGRESS):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or a platform without signal 0: keep it
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that earlier, killed writes of ``path`` left in its folder; return them.

    Only files named like this module's temporaries for this very target are considered, and only those whose
    writing process no longer runs (or, in the older ``.<name>.<random>.tmp`` form, that carry no process id).
    """
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(\d+)-)?[A-Za-z0-9_]+\.tmp$")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        m = pattern.match(tmp.name)
        if m is None or (m.group(1) is not None and _pid_alive(int(m.group(1)))):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; when the ``with`` body succeeds, rename it over ``path``.

    Args:
        path: the target; its folder is created if missing.
        mode: ``"wb"`` (binary, the default) or ``"w"`` (text, UTF-8, newlines written as given).

    If the body raises (KeyboardInterrupt included), the temporary file is deleted and ``path`` is untouched.
    The new file gets the permissions a plain ``open()`` would give it (mkstemp's are 0600).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    _IN_PROGRESS.add(tmp)
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _IN_PROGRESS.discard(tmp)
