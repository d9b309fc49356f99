"""The ``tinyconv`` command's first lines: Ctrl-C is handled from the very start, at any instant.

``import tinyconv`` takes a noticeable time (NumPy, numba), and a Ctrl-C inside an import leaves a traceback from
deep inside it, or a half-initialised module that the next import trips over. So the command starts here, in a
module outside the package that imports only the standard library: it sets up the interrupt handling, and only then
imports :mod:`tinyconv.cli`.

What Ctrl-C does (exit status 130 in every case, no traceback):

- while training (``tinyconv train``, from its first batch to its last evaluation): the first Ctrl-C is acknowledged
  at once on stderr ("stopping after this batch; Ctrl-C again to stop now"); the trainer finishes the batch in
  progress, saves a checkpoint and stops. A second Ctrl-C stops at once.
- anywhere else (importing, loading or fetching data, building the model, evaluating, writing the final files):
  it stops at once.

Stopping at once prints one line that says what was kept, removes the temporary files of the writes in progress
(every file tinyconv writes goes through a temporary file that is renamed into place when complete, so the
previous version of each file stays whole), and ends the process.

Why a watcher thread: Python runs a signal handler only between two bytecodes of the main thread, and the main
thread can spend seconds inside one C call (LLVM compiling a kernel). The signal is therefore also written to a
pipe (``signal.set_wakeup_fd``) that a small thread reads; that thread acknowledges and, when asked to stop now,
ends the process itself, whatever the main thread is doing.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

__all__ = ["Interrupts", "main"]

EXIT_INTERRUPTED = 130
ACKNOWLEDGEMENT = "stopping after this batch; Ctrl-C again to stop now"


def _write_line(line: str) -> None:
    """One line on stderr straight to the file descriptor: no Python-level buffer or lock to wait for. On a
    terminal the line first clears the progress bar it would otherwise be written over."""
    try:
        start = "\r\x1b[K" if os.isatty(2) else ""
        os.write(2, (start + line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


class Interrupts:
    """Ctrl-C for the ``tinyconv`` command: counted by a watcher thread, never lost, never a traceback.

    ``graceful(request_stop)`` marks the span in which the first Ctrl-C only asks the work to stop at a clean
    point (``request_stop()`` is called); ``final_line`` is a function giving the line printed when the process
    stops at once (it says what was kept). ``count`` is the number of Ctrl-C received.
    """

    def __init__(self) -> None:
        self.count = 0
        self.final_line = lambda: "interrupted: nothing was written"
        self._request_stop = None
        self._lock = threading.Lock()

    def install(self) -> bool:
        """Route SIGINT to the watcher thread. False where that is not possible (not the main thread, or a
        platform without ``set_wakeup_fd`` on pipes); Python's own KeyboardInterrupt then does the work."""
        if threading.current_thread() is not threading.main_thread():
            return False
        read_end, write_end = os.pipe()
        try:
            os.set_blocking(write_end, False)
            # The pipe first, the handler second: a Ctrl-C in between still raises KeyboardInterrupt (caught by
            # main) instead of reaching a handler that does nothing before the pipe is there.
            signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
            signal.signal(signal.SIGINT, self._ignore_in_main_thread)
        except (ValueError, OSError, AttributeError):
            signal.signal(signal.SIGINT, signal.default_int_handler)
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(-1)
            os.close(read_end)
            os.close(write_end)
            return False
        threading.Thread(target=self._watch, args=(read_end,), name="tinyconv-ctrl-c", daemon=True).start()
        return True

    @staticmethod
    def _ignore_in_main_thread(signum, frame) -> None:
        """A Python-level handler must exist for the wakeup pipe to be written; the watcher does the work."""

    def _watch(self, read_end: int) -> None:
        while True:
            try:
                received = os.read(read_end, 512)
            except InterruptedError:
                continue
            for signum in received:
                if signum == signal.SIGINT:
                    try:
                        self.on_sigint()
                    except Exception:  # noqa: BLE001 - the watcher must outlive any failure: stop rather than lose it
                        self.stop_now()

    def on_sigint(self) -> None:
        """One Ctrl-C: acknowledge and ask for a clean stop (the first, while graceful), or stop now."""
        with self._lock:
            self.count += 1
            if self.count == 1 and self._request_stop is not None:
                _write_line(ACKNOWLEDGEMENT)
                self._request_stop()
                return
        self.stop_now()

    def stop_now(self) -> None:
        """End the process at once: the final line, the temporary files of unfinished writes removed, exit 130."""
        try:  # a Ctrl-C can land while tinyconv.files is still being imported: then no write is in progress
            remove = getattr(sys.modules.get("tinyconv.files"), "remove_temporaries_in_progress", None)
            if remove is not None:
                remove()
        except Exception:  # noqa: BLE001 - nothing may keep the process from ending
            pass
        try:
            line = self.final_line()
        except Exception:  # the line is a courtesy; stopping is the point
            line = "interrupted"
        _write_line(line)  # not sys.stdout.flush(): the main thread may hold its lock, blocked on a full pipe
        os._exit(EXIT_INTERRUPTED)

    @contextlib.contextmanager
    def graceful(self, request_stop):
        """Within the block, the first Ctrl-C calls ``request_stop()`` (the work stops at its next clean point)
        instead of stopping the process; a Ctrl-C that came before the block is not forgotten."""
        with self._lock:
            if self.count:  # already asked to stop: pass it on
                request_stop()
            self._request_stop = request_stop
        try:
            yield self
        finally:
            with self._lock:
                self._request_stop = None


def main(argv=None) -> int:
    """Entry point of the ``tinyconv`` command: install the interrupt handling, then run :func:`tinyconv.cli.main`."""
    interrupts = Interrupts()
    try:
        installed = interrupts.install()
        from tinyconv.cli import main as cli_main

        status = cli_main(argv, interrupts=interrupts if installed else None)
        # The command has finished and said so. Python's teardown (numba's threads, module finalisers) restores the
        # default SIGINT action early on, and a Ctrl-C then would end the process by the signal, silently: ignore it
        # instead, and leave with the command's own status.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return status
    except KeyboardInterrupt:  # only where install() could not route SIGINT to the watcher
        _write_line("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
