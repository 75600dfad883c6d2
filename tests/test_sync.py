"""`fastsync sync`, end to end through the CLI on real trees under tmp_path: the target is
checked with `diff -r` and with Debian's rsync (`rsync -anci --delete SRC/ DST/` itemizes every
difference of content, type, permissions and times, so it must print nothing)."""
from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_support import poll

RSYNC = "/usr/bin/rsync"
NAMES = ["plain.txt", "with space.txt", "ünïcødé – ✓.txt", "日本語 ファイル", "semi;colon", "-dash", ".hidden",
         "quote'd \"x\"", "tab\there"]


def sync(*args, check: int | None = 0, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "fastsync", "sync", *map(str, args)], capture_output=True, text=True,
                       timeout=600, errors="surrogateescape", **kw)
    if check is not None:
        assert r.returncode == check, (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    return r


def identical(src: Path, dst: Path) -> None:
    """Nothing differs: diff -r (contents, names, link targets) and rsync's itemized dry run
    (also types, permissions and modification times, of directories and links too)."""
    d = subprocess.run(["diff", "-r", "--no-dereference", str(src), str(dst)], capture_output=True, text=True,
                       errors="surrogateescape")
    assert d.returncode == 0 and d.stdout == "", d.stdout[-3000:] + d.stderr[-3000:]
    r = subprocess.run([RSYNC, "-anci", "--delete", str(src) + "/", str(dst) + "/"], capture_output=True, text=True,
                       errors="surrogateescape")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout[-3000:] + r.stderr[-3000:]


def write(path: Path, data: bytes | str, mode: int | None = None, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def make_tree(root: Path) -> Path:
    """Names with spaces and unicode, nested and empty directories, an empty file, modes,
    relative, absolute and dangling symbolic links, a directory of restricted mode."""
    for i, name in enumerate(NAMES):
        write(root / name, "file %d %s\n" % (i, name) * (i + 1))
        write(root / "sub dir" / name, "nested %s\n" % name)
    write(root / "sub dir" / "deeper" / "ö" / "leaf.bin", os.urandom(70_000))
    write(root / "empty", b"")
    write(root / "exec.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    write(root / "private", "secret\n", mode=0o600)
    write(root / "readonly", "ro\n", mode=0o444)
    write(root / "locked dir" / "inside", "x\n")
    (root / "locked dir").chmod(0o500)
    (root / "empty dir").mkdir()
    (root / "link to plain").symlink_to("plain.txt")
    (root / "sub dir" / "up link").symlink_to("../with space.txt")
    (root / "absolute link").symlink_to("/etc/hostname")
    (root / "dangling").symlink_to("does not exist")
    (root / "dir link").symlink_to("sub dir")
    os.utime(root / "sub dir", (1_600_000_000, 1_600_000_000))
    return root


def listing(root: Path) -> dict:
    """path -> (type, mode, mtime_ns, size) of everything below root, the root too."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            p = os.path.join(dirpath, name) if name else dirpath
            if not name and p != str(root):
                continue
            s = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode), s.st_mtime_ns, s.st_size)
    return out


def summary(r: subprocess.CompletedProcess) -> str:
    return r.stdout.strip().splitlines()[-1]


def test_copy_and_resync_keep_contents_modes_times_links(tmp_path):
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    r = sync("-a", str(src) + "/", dst)
    assert summary(r).startswith("sent ") and " 24 files " in summary(r), r.stdout
    identical(src, dst)
    assert os.readlink(dst / "dangling") == "does not exist" and (dst / "dir link").is_symlink()
    assert not [p for p in dst.rglob("*") if "fastsync-" in p.name]
    again = sync("-a", "-v", str(src) + "/", dst)
    assert summary(again).startswith("sent 0 bytes, 0 files (29 unchanged, 0 deleted, 0 directories created)"), again.stdout
    assert again.stdout.strip().count("\n") == 0          # -v: nothing was copied, nothing named
    identical(src, dst)


def test_trailing_slash_copies_contents_without_it_the_directory(tmp_path):
    src = tmp_path / "src"
    write(src / "a" / "b.txt", "b")
    sync("-a", str(src) + "/", tmp_path / "contents")
    sync("-a", src, tmp_path / "itself")
    sync("-a", str(src) + "/.", tmp_path / "dot")
    assert (tmp_path / "contents" / "a" / "b.txt").read_text() == "b"
    assert (tmp_path / "itself" / "src" / "a" / "b.txt").read_text() == "b"
    assert (tmp_path / "dot" / "a" / "b.txt").read_text() == "b"
    identical(src, tmp_path / "itself" / "src")


def test_single_file_into_a_directory_or_to_a_name(tmp_path):
    f = write(tmp_path / "one file.txt", "1", mtime=1_500_000_000)
    (tmp_path / "into").mkdir()
    sync("-a", f, tmp_path / "into")
    sync("-a", f, tmp_path / "named.txt")
    assert (tmp_path / "into" / "one file.txt").read_text() == "1"
    assert (tmp_path / "named.txt").read_text() == "1"
    assert (tmp_path / "named.txt").stat().st_mtime == 1_500_000_000


# local to local: the C fast path (fastsync._treewalk), and the Python path, which any filter
# rule selects (a rule that matches nothing here)
PATHS = {"native": [], "python": ["--exclude", "/no such name"]}


@pytest.mark.parametrize("path", PATHS)
def test_changes_renames_deletions_type_changes(tmp_path, path):
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    sync("-a", *PATHS[path], str(src) + "/", dst)
    (src / "plain.txt").write_text("changed, longer than before\n")
    (src / "with space.txt").rename(src / "renamed with space.txt")
    (src / "sub dir" / "deeper" / "ö" / "leaf.bin").unlink()
    (src / "ünïcødé – ✓.txt").unlink()
    (src / "private").chmod(0o640)
    os.utime(src / "empty", (1_400_000_000, 1_400_000_000))
    (src / "link to plain").unlink()
    (src / "link to plain").symlink_to("exec.sh")
    (src / "empty dir").rmdir()
    write(src / "empty dir", "now a file")          # a directory becomes a file
    (src / "semi;colon").unlink()
    write(src / "semi;colon" / "now a dir", "x")    # a file becomes a directory
    r = sync("-a", *PATHS[path], "--delete", "-v", str(src) + "/", dst)
    identical(src, dst)
    lines = r.stdout.splitlines()
    assert summary(r).startswith("sent 83 bytes, 5 files (22 unchanged, 3 deleted, 1 directories created)"), summary(r)
    assert "deleting with space.txt" in lines and "deleting sub dir/deeper/ö/leaf.bin" in lines
    assert "renamed with space.txt" in lines and "plain.txt" in lines and "link to plain -> exec.sh" in lines
    assert "private" not in lines          # only its mode changed: not copied


def test_without_delete_extraneous_files_stay(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src / "a", "a")
    write(dst / "extra", "stays")
    sync("-a", str(src) + "/", dst)
    assert (dst / "extra").read_text() == "stays" and (dst / "a").read_text() == "a"


def test_include_exclude_rules_in_rsync_order(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for p in ["keep.log", "drop.log", "a/drop.log", "a/keep.log", "cache/x", "a/cache/y", "top", "a/top",
              "build/out.o", "build/keep.o", "notes.txt", "a/b/c/deep.tmp", "dir.d/x", "file.d"]:
        write(src / p, p)
    rules = tmp_path / "rules"
    rules.write_text("# comment\n; comment\n\n+ build/keep.o\nbuild/**\n*.tmp\n")
    sync("-a", "--include", "keep.log", "--exclude", "*.log", "--exclude", "cache/", "--exclude", "/top",
         "--exclude-from", rules, "--exclude", "*.d/", str(src) + "/", dst)
    got = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert got == ["a/keep.log", "a/top", "build/keep.o", "file.d", "keep.log", "notes.txt"]
    # excluded entries of the target are protected from --delete (as rsync without --delete-excluded)
    write(dst / "cache" / "mine", "mine")
    write(dst / "extra.log", "extra")
    write(dst / "gone", "gone")
    sync("-a", "--delete", "--exclude", "cache/", "--exclude", "*.log", str(src) + "/", dst)
    assert (dst / "cache" / "mine").exists() and (dst / "extra.log").exists() and not (dst / "gone").exists()
    # SRC without its slash: the transfer root is its parent, an anchored rule names src/ too (rsync)
    sync("-a", "--exclude", "/src/top", "--exclude", "/a", src, tmp_path / "itself")
    assert not (tmp_path / "itself" / "src" / "top").exists() and (tmp_path / "itself" / "src" / "a").is_dir()


def test_dry_run_lists_and_changes_nothing(tmp_path):
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    write(dst / "stale", "stale")
    write(dst / "plain.txt", "old")
    before = listing(dst)
    r = sync("-a", "-n", "--delete", str(src) + "/", dst)
    assert listing(dst) == before
    lines = r.stdout.splitlines()
    assert "deleting stale" in lines and "plain.txt" in lines and "sub dir/" in lines and "dangling -> does not exist" in lines
    assert summary(r).startswith("dry run: would have sent ")


def test_checksum_finds_same_size_same_mtime_changes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src / "f", "aaaa", mtime=1_500_000_000)
    sync("-a", str(src) + "/", dst)
    write(src / "f", "bbbb", mtime=1_500_000_000)     # same size, same mtime, other bytes
    assert " 0 files " in summary(sync("-a", str(src) + "/", dst))
    assert (dst / "f").read_text() == "aaaa"          # the quick check can't see it, as rsync's
    r = sync("-ac", "-v", str(src) + "/", dst)
    assert "f" in r.stdout.splitlines() and (dst / "f").read_text() == "bbbb"
    identical(src, dst)
    os.utime(src / "f", (1_600_000_000, 1_600_000_000))   # -c and only the mtime differs: not copied, mtime set
    r = sync("-ac", str(src) + "/", dst)
    assert " 0 files " in summary(r) and (dst / "f").stat().st_mtime == 1_600_000_000


def test_size_only_ignores_mtimes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src / "f", "1234")
    write(dst / "f", "abcd", mtime=1_000_000_000)
    assert " 0 files " in summary(sync("-a", "--size-only", str(src) + "/", dst))
    # not copied; its mtime is the source's now, as rsync -a sets an unchanged file's attributes
    assert (dst / "f").read_text() == "abcd" and (dst / "f").stat().st_mtime == (src / "f").stat().st_mtime
    assert " 1 files " in summary(sync("-ac", str(src) + "/", dst))
    identical(src, dst)


def test_file_urls(tmp_path):
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    sync("-a", "file://%s/" % src, "file://%s" % dst)
    identical(src, dst)


def test_without_a_or_r_a_directory_is_skipped_and_without_l_links_are(tmp_path):
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    r = sync(str(src) + "/", dst)
    assert "skipping directory" in r.stderr and not dst.exists()
    r = sync("-rt", str(src) + "/", dst)
    assert "skipping non-regular file" in r.stderr and not (dst / "dangling").is_symlink()
    assert (dst / "plain.txt").read_text() == (src / "plain.txt").read_text()


def _run_until(args: list, condition, timeout: float = 120) -> subprocess.Popen:
    """A sync started in the background, killed with SIGKILL once condition() holds."""
    p = subprocess.Popen([sys.executable, "-m", "fastsync", "sync", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        poll(lambda: condition() or p.poll() is not None, timeout, message="the sync to get going")
        assert p.poll() is None, "the sync ended before it could be killed: %r" % (p.communicate(),)
    finally:
        p.kill()
        p.communicate()
    return p


def _writers_of(dst: Path) -> list[int]:
    """Processes with dst on their command line."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if os.fsencode(str(dst)) in f.read().split(b"\0"):
                    out.append(int(pid))
        except OSError:
            pass
    return out


def _complete_or_absent(src: Path, dst: Path) -> int:
    """Every regular file under its name in dst is its source's bytes; the number of those."""
    n = 0
    for p in dst.rglob("*"):
        if p.is_file() and not p.is_symlink() and "fastsync-" not in p.name:
            assert p.read_bytes() == (src / p.relative_to(dst)).read_bytes(), p
            n += 1
    return n


def test_vanished_file_is_reported_code_24_rest_synced(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src / "a-big", os.urandom(3 << 20))
    for i in range(20):
        write(src / ("z%02d" % i), "z%d" % i)
    # -j 1 copies in name order and --bwlimit makes a-big take ~1.5 s: z07 vanishes meanwhile
    p = subprocess.Popen([sys.executable, "-m", "fastsync", "sync", "-a", "-j", "1", "--bwlimit", "2048",
                          str(src) + "/", str(dst)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poll(lambda: any(n.endswith(".fastsync-tmp") for n in os.listdir(dst)) if dst.exists() else False, 60)
    (src / "z07").unlink()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 24, (out, err)
    assert "file has vanished: %s" % (src / "z07") in err and "(code 24)" in err
    os.utime(src, ns=(0, dst.stat().st_mtime_ns))     # the unlink changed src's mtime after it was listed
    identical(src, dst)      # the rest is there
    assert " 20 files " in out


def _drop_read_override():
    """Runs in the child before exec: as root, take CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out
    of the bounding set, so the exec'd process really can't read a mode 000 file (root could)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):                       # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file_is_an_error_naming_it_code_23_rest_synced(tmp_path):
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    secret = write(src / "sub dir" / "unreadable", "no", mode=0o000)
    r = sync("-a", str(src) + "/", dst, check=23, preexec_fn=_drop_read_override if os.geteuid() == 0 else None)
    assert "error: read %s: Permission denied" % secret in r.stderr, r.stderr
    assert "(code 23)" in r.stderr and summary(r).startswith("sent ")
    assert not (dst / "sub dir" / "unreadable").exists()
    secret.unlink()
    os.utime(src / "sub dir", ns=(0, (dst / "sub dir").stat().st_mtime_ns))    # as before the unlink
    identical(src, dst)


@pytest.mark.parametrize("path", PATHS)
def test_many_small_files_by_worker_processes_report_through_the_parent(tmp_path, path):
    """Local to local, small files are copied by -j N C threads (native), or, in the Python
    path, from 256 small files on by N forked processes: either way their -v lines and errors
    reach the command's output and exit code."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(600):
        write(src / ("d%d" % (i % 7)) / ("f %03d é" % i), os.urandom(i))
    secret = write(src / "d3" / "unreadable", "no", mode=0o000)
    r = sync("-a", *PATHS[path], "-v", "-j", "3", str(src) + "/", dst, check=23,
             preexec_fn=_drop_read_override if os.geteuid() == 0 else None)
    assert "error: read %s: Permission denied" % secret in r.stderr, r.stderr
    assert sum(1 for line in r.stdout.splitlines() if line.startswith("d") and "/f " in line) == 600
    assert " 600 files " in summary(r)
    secret.unlink()
    os.utime(src / "d3", ns=(0, (dst / "d3").stat().st_mtime_ns))
    identical(src, dst)


def test_names_whose_temporary_name_is_too_long_are_copied_too(tmp_path):
    """Local to local, small files are copied by C threads (fastsync._treewalk) under
    .NAME.TAG.fastsync-tmp; where that is longer than NAME_MAX the file goes through Python's
    copy, which hashes the name. Both in one sync, with -v."""
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    long_names = ["L" * 255, "é" * 120 + "x"]        # 255 bytes each, ASCII and two-byte UTF-8
    for name in long_names:
        write(src / "sub dir" / name, name)
    r = sync("-a", "-v", str(src) + "/", dst)
    assert all(("sub dir/" + name) in r.stdout.splitlines() for name in long_names)
    identical(src, dst)
    assert sync("-a", str(src) + "/", dst).stdout.startswith("sent 0 bytes, 0 files")


def test_bad_input_is_one_line_naming_it(tmp_path):
    src = make_tree(tmp_path / "src")
    for args, code, words in ([["-a", tmp_path / "nope/", tmp_path / "d"], 23, "SRC %s: no such file" % (tmp_path / "nope/")],
                              [["-a", "--bwlimit", "fast", src, tmp_path / "d"], 2, "--bwlimit"],
                              [["-a", "--exclude-from", tmp_path / "none", src, tmp_path / "d"], 2, "--exclude-from"],
                              [["-a", "-j", "0", src, tmp_path / "d"], 2, "-j"]):
        r = sync(*args, check=code)
        assert words in r.stderr.strip().splitlines()[-1], r.stderr      # (argparse's usage lines before it)
    assert not (tmp_path / "d").exists()


def test_progress_is_quiet_in_a_pipe_and_bwlimit_paces(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src / "f", os.urandom(1 << 20))
    r = sync("-a", "-P", "--bwlimit", "4M", str(src) + "/", dst)
    assert r.stderr == "" and "\r" not in r.stdout
    identical(src, dst)


def _sparse(path: Path, size: int, blocks: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        for at in blocks:
            f.seek(at)
            f.write(os.urandom(1 << 20))
    return path


def test_partial_resumes_a_killed_big_copy(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    big = write(src / "big file", os.urandom(1 << 20) * 24)           # 24 MiB
    def kept():
        return [p for p in dst.glob(".big file.*.fastsync-partial") if p.stat().st_size >= 4 << 20] if dst.exists() else []
    _run_until(["-a", "--partial", "-j", "1", "--bwlimit", "8M", str(src) + "/", dst], kept)
    part = kept()[0]
    assert not (dst / "big file").exists()               # not under its name until complete
    assert part.read_bytes() == big.read_bytes()[:part.stat().st_size]
    r = sync("-a", "--partial", "-v", str(src) + "/", dst)
    assert "big file: resuming after" in r.stdout
    identical(src, dst)
    assert not list(dst.glob(".*fastsync*"))


def test_partial_is_not_resumed_from_another_source_version(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src / "big", os.urandom(1 << 20) * 16)
    def kept():
        return [p for p in dst.glob(".big.*.fastsync-partial") if p.stat().st_size >= 2 << 20] if dst.exists() else []
    _run_until(["-a", "-P", "-j", "1", "--bwlimit", "4M", str(src) + "/", dst], kept)
    write(src / "big", os.urandom(1 << 20) * 16)          # same size, new bytes and mtime
    r = sync("-a", "-P", "-v", str(src) + "/", dst)
    assert "resuming" not in r.stdout
    identical(src, dst)
    assert not list(dst.glob(".*fastsync*"))


@pytest.mark.slow
def test_ten_thousand_files_and_sparse_500mb_killed_then_rerun_then_changed(tmp_path):
    """The issue's tree: 10 000 small files, three 500 MB sparse files, unicode and spaces, links,
    modes. A first sync is killed with SIGKILL midway: what is in the target is complete; the
    re-run leaves it identical and the big files still sparse. Then renames, deletions and mode
    changes, and a --delete sync."""
    src, dst = make_tree(tmp_path / "src"), tmp_path / "dst"
    for i in range(10_000):
        write(src / ("d%02d" % (i % 50)) / ("f %05d ✓" % i), os.urandom(i % 4096))
    for i in range(3):
        _sparse(src / "big" / ("sparse %d.img" % i), 500_000_000, [0, 123_456_789, 499_000_000 - i])
    # killed as soon as the first worker process has written into d00 (the copy takes far longer)
    p = _run_until(["-a", "-j", "4", str(src) + "/", dst], lambda: (dst / "d00").exists() and any(os.scandir(dst / "d00")))
    assert _complete_or_absent(src, dst) > 0
    # the worker processes died with it: nothing writes on into the target
    poll(lambda: not _writers_of(dst), 10, message="worker processes of the killed sync %d to end" % p.pid)
    r = sync("-a", str(src) + "/", dst)
    identical(src, dst)
    assert not [p for p in dst.rglob("*fastsync-*")]
    for i in range(3):
        assert os.stat(dst / "big" / ("sparse %d.img" % i)).st_blocks * 512 < 50_000_000     # holes kept
    for i in range(0, 10_000, 97):
        p = src / ("d%02d" % (i % 50)) / ("f %05d ✓" % i)
        if i % 2:
            p.rename(p.with_name(p.name + " renamed"))
        else:
            p.unlink()
    (src / "d07").chmod(0o700)
    (src / "d08" / ("f %05d ✓" % 8)).chmod(0o600)
    _sparse(src / "big" / "sparse 1.img", 500_000_000, [250_000_000])        # one more data block
    r = sync("-a", "--delete", str(src) + "/", dst)
    assert " 1 files " not in summary(r)
    identical(src, dst)


def _arrow_tree(path: Path, renames: bool):
    """The generic pyarrow path (what hdfs:// and s3:// go through) on pyarrow's own local
    filesystem: renames=False writes straight to the name, as to an object store."""
    import pyarrow.fs as pafs

    from fastsync.filesystems import Location
    from fastsync.sync.arrowtree import ArrowTree
    return ArrowTree(Location(pafs.LocalFileSystem(), str(path), "arrow:%s" % path, renames))


@pytest.mark.parametrize("renames", [True, False], ids=["temp-then-move", "direct-put"])
def test_through_pyarrow_filesystems_both_ways(tmp_path, renames):
    from fastsync.sync.engine import Sync, SyncOptions
    from fastsync.sync.report import Report

    src = make_tree(tmp_path / "src")
    (src / "locked dir").chmod(0o755)
    opts = SyncOptions(recursive=True, links=True, perms=True, times=True, delete=True)

    def run(a, b) -> Report:
        sync_ = Sync(a, b, opts, Report(err=open(os.devnull, "w")))
        return sync_.run()

    out = tmp_path / "out"
    r = run(str(src) + "/", _arrow_tree(out, renames))
    assert r.files == 24 and not r.errors and r.links == 0     # links: skipped, pyarrow has none
    for p in src.rglob("*"):
        q = out / p.relative_to(src)
        assert q.is_symlink() is False and (p.is_symlink() or q.exists()), p
        if p.is_file() and not p.is_symlink():
            assert q.read_bytes() == p.read_bytes()
    assert not list(out.rglob("*fastsync-*"))
    again = run(str(src) + "/", _arrow_tree(out, renames))
    assert again.files == 0 and again.unchanged == 24            # the target's mtimes are newer
    (src / "plain.txt").write_text("longer than it was before\n")
    write(out / "extra", "x")
    again = run(str(src) + "/", _arrow_tree(out, renames))
    assert again.files == 1 and again.deleted == 1 and (out / "plain.txt").read_text() == "longer than it was before\n"
    # and back: a pyarrow source into a local target keeps its mtimes
    back = tmp_path / "back"
    r = run(_arrow_tree(out, renames), str(back))
    assert r.files == 24 and not r.errors
    assert (back / "out" / "plain.txt").stat().st_mtime_ns == (out / "plain.txt").stat().st_mtime_ns


def test_a_target_that_is_a_link_to_a_directory_is_followed(tmp_path):
    src = tmp_path / "src"
    write(src / "f", "f")
    (tmp_path / "real").mkdir()
    (tmp_path / "via link").symlink_to("real")
    sync("-a", str(src) + "/", tmp_path / "via link")
    assert (tmp_path / "via link").is_symlink() and (tmp_path / "real" / "f").read_text() == "f"


def test_progress_line_on_a_terminal(tmp_path):
    import pty
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src / "f", os.urandom(3 << 20))
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "fastsync", "sync", "-a", "--progress", "--bwlimit", "3M",
                          str(src) + "/", str(dst)], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:          # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert p.wait(60) == 0
    text = seen.decode()
    assert "\r1/1 files, 3.1/3.1 MB, " in text and " MB/s" in text, text     # the last redraw: all done


@pytest.mark.parametrize("rules", [
    ["--exclude", "*.o"],
    ["--include", "*/", "--include", "*.c", "--exclude", "*"],
    ["--exclude", "/build/", "--exclude", "tmp"],
    ["--exclude", "src/**/gen"],
    ["--include", "keep/***", "--exclude", "*"],
    ["--exclude", "[ab]*.txt", "--exclude", "?.md"],
    ["--exclude", "**/deep/*.c"],
    ["--exclude", "lib/"],
    ["--include", "/lib/x.c", "--exclude", "/lib/*"],
    ["--exclude", "a/**/d.o", "--exclude", "src/**/*.c", "--exclude", "a/**/b"],
    ["--exclude", "x.md", "--include", "*.md", "--exclude", "*.md"],
], ids=lambda r: " ".join(r))
def test_filter_rules_select_what_rsync_selects(tmp_path, rules):
    src = tmp_path / "src"
    for p in ["a.txt", "b.txt", "c.txt", "x.md", "xy.md", "main.c", "main.o", "build/out.o", "build/keep.c",
              "src/build/y.c", "src/tmp", "tmp/z", "src/a/gen/g.c", "src/gen/h.c", "gen/top.c", "keep/k.o",
              "keep/sub/k.c", "lib/x.c", "lib/y.c", "src/lib/z.c", "a/b/deep/d.c", "a/b/deep/d.o", "deep/e.c"]:
        write(src / p, p)
    sync("-a", *rules, str(src) + "/", tmp_path / "ours")
    subprocess.run([RSYNC, "-a", *rules, str(src) + "/", str(tmp_path / "theirs")], check=True)
    ours = sorted(str(p.relative_to(tmp_path / "ours")) for p in (tmp_path / "ours").rglob("*"))
    theirs = sorted(str(p.relative_to(tmp_path / "theirs")) for p in (tmp_path / "theirs").rglob("*"))
    assert ours == theirs


def test_to_and_from_the_real_hdfs(tmp_path, hdfs):
    """local -> hdfs:// (read back by Hadoop's FsShell), a re-sync copies nothing, a change
    and --delete, then hdfs:// -> local equals the source (symbolic links skipped: HDFS has
    none here)."""
    src = tmp_path / "src"
    for i, name in enumerate(NAMES):
        write(src / name, "file %d %s\n" % (i, name) * (i + 1))
        write(src / "sub dir" / name, "nested %s\n" % name)
    write(src / "big.bin", os.urandom(3_000_000))
    write(src / "empty", b"")
    target = hdfs.dir_url + "/tree"
    r = sync("-a", str(src) + "/", target)
    assert "sent" in summary(r)
    assert hdfs.dfs("-cat", hdfs.dir + "/tree/sub dir/plain.txt") == "nested plain.txt\n"
    listed = hdfs.dfs("-ls", "-R", hdfs.dir + "/tree")
    assert listed.count("\n-") + listed.startswith("-") == 2 * len(NAMES) + 2, listed      # files
    assert "fastsync-tmp" not in listed
    again = sync("-a", "-v", str(src) + "/", target)
    n = 2 * len(NAMES) + 2
    assert summary(again).startswith("sent 0 bytes, 0 files (%d unchanged, 0 deleted" % n), summary(again)
    write(src / "plain.txt", "changed, and longer than before\n")
    (src / "empty").unlink()
    sync("-a", "--delete", str(src) + "/", target)
    assert hdfs.dfs("-cat", hdfs.dir + "/tree/plain.txt") == "changed, and longer than before\n"
    assert "/tree/empty" not in hdfs.dfs("-ls", "-R", hdfs.dir + "/tree")
    back = tmp_path / "back"
    sync("-r", target + "/", str(back))
    d = subprocess.run(["diff", "-r", str(src), str(back)], capture_output=True, text=True, errors="surrogateescape")
    assert d.returncode == 0, d.stdout[-3000:]


def test_to_and_from_s3(tmp_path, s3):
    """local -> s3:// on the S3-compatible server (objects put whole, read back with pyarrow),
    a re-sync copies nothing, a change and --delete, then s3:// -> local equals the source."""
    src = tmp_path / "src"
    for i, name in enumerate(NAMES):
        write(src / name, "file %d %s\n" % (i, name) * (i + 1))
        write(src / "sub dir" / name, "nested %s\n" % name)
    write(src / "big.bin", os.urandom(3_000_000))
    target = "s3://%s/tree" % s3.bucket
    n = 2 * len(NAMES) + 1
    sync("-a", str(src) + "/", target)
    with s3.fs.open_input_stream("%s/tree/sub dir/plain.txt" % s3.bucket) as f:
        assert f.read() == b"nested plain.txt\n"
    import pyarrow.fs as pafs
    objects = [i.path for i in s3.fs.get_file_info(pafs.FileSelector(s3.bucket + "/tree", recursive=True))
               if i.type == pafs.FileType.File]
    assert len(objects) == n and not [o for o in objects if "fastsync-" in o], objects
    again = sync("-a", str(src) + "/", target)
    assert summary(again).startswith("sent 0 bytes, 0 files (%d unchanged, 0 deleted" % n), summary(again)
    write(src / "plain.txt", "changed, and longer than before\n")
    (src / "big.bin").unlink()
    sync("-a", "--delete", str(src) + "/", target)
    with s3.fs.open_input_stream("%s/tree/plain.txt" % s3.bucket) as f:
        assert f.read() == b"changed, and longer than before\n"
    assert s3.fs.get_file_info("%s/tree/big.bin" % s3.bucket).type == pafs.FileType.NotFound
    back = tmp_path / "back"
    sync("-r", target + "/", str(back))
    d = subprocess.run(["diff", "-r", str(src), str(back)], capture_output=True, text=True, errors="surrogateescape")
    assert d.returncode == 0, d.stdout[-3000:]
