"""`fastsync sync SRC DST` between local directories: both trees start being listed (native,
without the GIL) as soon as the command line is read, while Python imports and builds the
rest (~30 ms of one thread before the sync's own code runs); fastlocal.Listed takes a listing
from here when it was made of the same root.

Only for plain command lines (rsync's trailing-slash rule applied as engine.Sync applies it,
no filter rules, no -n, --partial, --bwlimit): anything else starts nothing, and a root that
turns out different (a link resolved, a URL) is listed again there; a listing started here and
not taken costs only its CPU.
"""
from __future__ import annotations

import os
import threading

# flags that leave the trees and the fast path as they are; any other flag: no prefetch
PLAIN = {"-a", "--archive", "-r", "--recursive", "-l", "--links", "-p", "--perms", "-t", "--times", "-v",
         "--verbose", "--delete", "-c", "--checksum", "--size-only", "--progress"}
SHORT = set("arlptvc")        # clusters of these (-av, -rlptv)
RECURSIVE = {"-a", "--archive", "-r", "--recursive"}

_started: dict[tuple[str, bool], tuple[threading.Thread, dict]] = {}


def roots(args: list[str]) -> tuple[str, str] | None:
    """The source and target roots a `sync` with these arguments lists, if it is a plain
    recursive one between local paths; else None."""
    words, recursive, i = [], False, 0
    while i < len(args):
        a = args[i]
        i += 1
        if a in ("-j", "--jobs"):
            i += 1
        elif a.startswith("--jobs=") or (a.startswith("-j") and a[2:].isdigit()):
            pass
        elif a in PLAIN:
            recursive = recursive or a in RECURSIVE
        elif a.startswith("-") and not a.startswith("--") and len(a) > 1 and set(a[1:]) <= SHORT:
            recursive = recursive or "a" in a or "r" in a
        elif a.startswith("-"):
            return None
        else:
            words.append(a)
    if not recursive or len(words) != 2 or any("://" in w for w in words):
        return None
    src, dst = words
    src_root, dst_root = os.path.abspath(src), os.path.abspath(dst)
    if not (src.endswith(("/", "/.")) or src == "."):      # "src": the directory itself, into DST
        name = src_root.rstrip("/").rpartition("/")[2]
        if not name:
            return None
        dst_root = os.path.join(dst_root, name)
    return src_root, dst_root


def start(args: list[str]) -> None:
    """Starts listing the two trees of a plain `sync` (see roots) on threads of their own."""
    found = roots(args)
    if found is None:
        return
    from fastsync import _treewalk
    from fastsync.sync.fastlocal import WALKERS
    for root, leftovers in ((found[0], False), (found[1], True)):
        box: dict = {}

        def walk(root=root, leftovers=leftovers, box=box) -> None:
            try:
                box["listing"] = _treewalk.walk(os.fsencode(root), leftovers, WALKERS)
            except Exception:          # (out of memory): listed again where it is used
                pass

        t = threading.Thread(target=walk, name="sync-prefetch", daemon=True)
        t.start()
        _started[(root, leftovers)] = (t, box)


def take(root: str, leftovers: bool):
    """The listing started for this root, once done; None if there is none, or if its root
    could not be listed (it may exist by now)."""
    got = _started.pop((root, leftovers), None)
    if got is None:
        return None
    got[0].join()
    listing = got[1].get("listing")
    if listing is None or any(rel == b"" for _, rel, _ in listing.errors):
        return None
    return listing


def discard() -> None:
    """Waits for the listings nobody took (so the process ends with no thread running)."""
    while _started:
        _started.popitem()[1][0].join()
