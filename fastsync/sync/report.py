"""What a sync did, for its summary line, its -v lines, its messages and its exit code (rsync's:
0 all done, 23 some files or attributes were not transferred, 24 some source files vanished)."""
from __future__ import annotations

import sys
import threading

EXIT_OK, EXIT_PARTIAL, EXIT_VANISHED = 0, 23, 24


def _write(stream, text: str) -> None:
    """A line with any file name in it: names that are not UTF-8 (surrogate-escaped by the OS
    layer) are written back as their bytes, never as an encoding error."""
    data = (text + "\n").encode("utf-8", "surrogateescape")
    buf = getattr(stream, "buffer", None)
    if buf is not None:
        stream.flush()
        buf.write(data)
        buf.flush()
    else:
        stream.write(data.decode("utf-8", "replace"))


class Report:
    """Counters and messages, updated by the copying threads."""

    def __init__(self, verbose: bool = False, out=None, err=None):
        self.verbose = verbose
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.lock = threading.Lock()
        self.files = 0          # files copied (or that would be, with --dry-run)
        self.bytes = 0          # their bytes
        self.unchanged = 0
        self.deleted = 0
        self.dirs = 0           # directories created
        self.links = 0          # symbolic links created
        self.vanished: list[str] = []
        self.errors: list[str] = []
        self.files_total = 0    # to copy, for the progress line
        self.bytes_total = 0
        self.bytes_done = 0     # copied so far, for the progress line

    def show(self, text: str) -> None:
        """A -v line (what is copied, created, deleted) on stdout."""
        with self.lock:
            _write(self.out, text)

    def warn(self, text: str) -> None:
        with self.lock:
            _write(self.err, "fastsync: " + text)

    def file_vanished(self, path: str) -> None:
        with self.lock:
            self.vanished.append(path)
        self.warn("file has vanished: %s" % path)

    def error(self, path: str, what: str, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or " ".join(str(exc).split())
                                                  or type(exc).__name__)
        with self.lock:
            self.errors.append(path)
        self.warn("error: %s %s: %s" % (what, path, reason))

    def copied(self, size: int) -> None:
        with self.lock:
            self.files += 1
            self.bytes += size

    def copied_many(self, files: int, size: int, progressed: int) -> None:
        """What a worker process copied since its last report (procs.py)."""
        with self.lock:
            self.files += files
            self.bytes += size
            self.bytes_done += progressed

    def progressed(self, n: int) -> None:
        self.bytes_done += n       # a display figure: a lost update under a race is harmless

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def exit_code(self) -> int:
        # as rsync: an error outranks a vanished file
        return EXIT_PARTIAL if self.errors else EXIT_VANISHED if self.vanished else EXIT_OK

    def summary(self, seconds: float, dry_run: bool) -> str:
        rate = self.bytes / max(seconds, 1e-9) / 1e6
        return ("%ssent %d bytes, %d files (%d unchanged, %d deleted, %d directories created) in %.3f s: %.2f MB/s"
                % ("dry run: would have " if dry_run else "", self.bytes, self.files, self.unchanged,
                   self.deleted, self.dirs, seconds, rate))

    def closing_message(self) -> str | None:
        code = self.exit_code()
        if code == EXIT_PARTIAL:
            return ("error: %d files or directories were not transferred (see the errors above) (code %d)"
                    % (len(self.errors), code))
        if code == EXIT_VANISHED:
            return "warning: %d source files vanished before they could be transferred (code %d)" % (len(self.vanished), code)
        return None

    def status(self, elapsed: float) -> str:
        """The progress line: files, bytes and MB/s so far."""
        return "%d/%d files, %.1f/%.1f MB, %.1f MB/s" % (
            self.files, self.files_total, self.bytes_done / 1e6, self.bytes_total / 1e6,
            self.bytes_done / max(elapsed, 1e-9) / 1e6)
