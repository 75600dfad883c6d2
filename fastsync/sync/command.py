"""The `sync` subcommand's flags (rsync's names and meanings) and its run."""
from __future__ import annotations

import argparse
import re
import sys


def _rule(kind: str):
    def parse(text: str) -> tuple[str, str]:
        return kind, text
    return parse


def bwlimit(text: str) -> float:
    """rsync's --bwlimit RATE: KiB/s, or with a suffix K, M, G (powers of 1024; KB, MB, GB: of
    1000); 0 for no limit. Bytes/s."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmgKMG]?)([bB]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError("expected a rate in KiB/s such as 500, 1.5M or 10MB, got %r" % text)
    number, unit, decimal = float(m.group(1)), (m.group(2) or "k").lower(), bool(m.group(3))
    return number * (1000 if decimal else 1024) ** ("kmg".index(unit) + 1)


def positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError("expected a whole number ≥ 1, got %r" % text)
    return n


def add_flags(p) -> None:
    p.add_argument("src", metavar="SRC", help="local path or URL (file://, hdfs://, s3://, gs://); "
                   "SRC/ copies the directory's contents, SRC the directory itself (as rsync)")
    p.add_argument("dst", metavar="DST", help="local path or URL")
    p.add_argument("-a", "--archive", action="store_true",
                   help="-rlpt: recursive, symbolic links as links, permissions and modification times kept")
    p.add_argument("-r", "--recursive", action="store_true", help="into directories")
    p.add_argument("-l", "--links", action="store_true", help="copy symbolic links as symbolic links")
    p.add_argument("-p", "--perms", action="store_true", help="keep permissions (where the target has them)")
    p.add_argument("-t", "--times", action="store_true", help="keep modification times (where the target can set them)")
    p.add_argument("--delete", action="store_true", help="delete target entries the source lacks (not excluded ones)")
    p.add_argument("-n", "--dry-run", action="store_true", help="list what would be copied and deleted; change nothing")
    p.add_argument("-c", "--checksum", action="store_true",
                   help="compare same-size files by content, not by size and mtime")
    p.add_argument("--size-only", action="store_true", help="a file of the same size is unchanged, whatever its mtime")
    p.add_argument("--exclude", metavar="PATTERN", dest="rules", action="append", type=_rule("-"),
                   help="skip paths matching PATTERN (rsync's patterns; the first matching rule wins)")
    p.add_argument("--include", metavar="PATTERN", dest="rules", action="append", type=_rule("+"),
                   help="do not skip paths matching PATTERN (in order with --exclude)")
    p.add_argument("--exclude-from", metavar="FILE", dest="rules", action="append", type=_rule("from"),
                   help="exclude patterns from FILE, one a line ('+ PATTERN' includes; # and ; start comments)")
    p.add_argument("-v", "--verbose", action="store_true", help="name each file copied, directory created, entry deleted")
    p.add_argument("--progress", action="store_true", help="a progress line (files, bytes, MB/s) on a terminal")
    p.add_argument("--bwlimit", metavar="RATE", type=bwlimit, default=0.0,
                   help="at most RATE KiB/s (suffixes K, M, G; 0: no limit)")
    p.add_argument("--partial", action="store_true",
                   help="keep the temporary file of an interrupted copy; the next run continues it")
    p.add_argument("-P", dest="partial_progress", action="store_true", help="--partial --progress")
    p.add_argument("-j", "--jobs", type=positive, default=4, help="files copied at once (default 4)")
    p.set_defaults(func=run)


def run(args) -> int:
    from fastsync.cli import EXIT_CONFIG, CliError
    from fastsync.sync.engine import SyncError, SyncOptions, run_sync
    from fastsync.sync.filters import FilterError, Filters

    try:
        filters = Filters.from_args(args.rules or [])
    except FilterError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    a = args.archive
    opts = SyncOptions(recursive=a or args.recursive, links=a or args.links, perms=a or args.perms,
                       times=a or args.times, delete=args.delete, dry_run=args.dry_run, checksum=args.checksum,
                       size_only=args.size_only, verbose=args.verbose, progress=args.progress or args.partial_progress,
                       bwlimit=args.bwlimit, partial=args.partial or args.partial_progress, jobs=args.jobs,
                       filters=filters)
    try:
        report, seconds = run_sync(args.src, args.dst, opts)
    except SyncError as exc:
        raise CliError(str(exc), exc.code) from None
    print(report.summary(seconds, opts.dry_run), flush=True)
    closing = report.closing_message()
    if closing:
        print("fastsync: " + closing, file=sys.stderr, flush=True)
    return report.exit_code()
