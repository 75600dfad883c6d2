"""fastsync._treewalk (ext/fastsync/_treewalk.pyx) against pure-Python references of its
contract: the listing against os.walk + os.lstat, the comparison against the rules of
engine.Sync (written out again here), the copies against the source files' bytes and
attributes. The sync command's behaviour on top of it is tests/test_sync.py's."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from fastsync import _treewalk as tw


def make_tree(root, variant: int = 0) -> None:
    """Files (empty, small, sparse), unicode and spaces in names, empty and nested
    directories, symbolic links (to a file, a directory, nowhere), a FIFO, odd modes."""
    os.makedirs(root / "empty dir")
    os.makedirs(root / "a" / "b" / "c")
    os.makedirs(root / "ünï cødé ✓")
    for i, name in enumerate(["plain.txt", "with space", "日本語 ファイル", "-dash", ".hidden", "tab\there"]):
        (root / "a" / name).write_bytes(b"x" * (i * 37 + variant))
    (root / "a" / "b" / "c" / "deep").write_bytes(b"deep")
    (root / "ünï cødé ✓" / "é").write_bytes(b"")
    with open(root / "sparse", "wb") as f:
        f.truncate(1 << 20)
        f.write(b"head")
    os.symlink("a/plain.txt", root / "to file")
    os.symlink("a", root / "to dir")
    os.symlink("nowhere/at all", root / "dangling")
    os.mkfifo(root / "fifo")
    os.chmod(root / "a" / "plain.txt", 0o600)
    os.chmod(root / "a" / "-dash", 0o751)
    os.chmod(root / "a" / "b", 0o705)
    if os.path.exists(b"/proc/self"):      # a name that is not UTF-8
        (root / os.fsdecode(b"bad \xff name")).write_bytes(b"?")


def reference(root) -> dict[bytes, tuple]:
    """path -> (kind, size, mtime_ns, mode, target, sparse), with os.walk and os.lstat."""
    out = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            kind = ("f" if stat.S_ISREG(s.st_mode) else "d" if stat.S_ISDIR(s.st_mode)
                    else "l" if stat.S_ISLNK(s.st_mode) else "o")
            out[os.path.relpath(p, broot)] = (kind, s.st_size, s.st_mtime_ns, s.st_mode & 0o7777,
                                              os.readlink(p) if kind == "l" else b"",
                                              kind == "f" and s.st_blocks * 512 < s.st_size)
    return out


def listed(listing: tw.Listing) -> dict[bytes, tuple]:
    return {e[0]: e[1:] for e in (listing.entry(i) for i in range(len(listing)))}


@pytest.mark.parametrize("threads", [1, 3])
def test_walk_lists_what_os_walk_and_lstat_see(tmp_path, threads):
    make_tree(tmp_path)
    for i in range(30):      # enough directories for three threads to share
        (tmp_path / "a" / ("sub %d" % i)).mkdir()
        (tmp_path / "a" / ("sub %d" % i) / "f").write_bytes(b"%d" % i)
    listing = tw.walk(os.fsencode(tmp_path), False, threads)
    assert listed(listing) == reference(tmp_path)
    assert listing.errors == [] and listing.leftovers == []
    paths = [listing.path(i) for i in listing.sorted_indices()]
    assert paths == sorted(reference(tmp_path))
    assert listed(listing)[b"sparse"][-1] is True and listed(listing)[b"to dir"][0] == "l"   # not entered


def test_walk_sets_aside_leftovers_and_reports_a_missing_root(tmp_path):
    make_tree(tmp_path)
    for name in [".a.1-2.fastsync-tmp", "a/.x.5-6-7.fastsync-tmp", "a/b/.y.10-20.fastsync-partial"]:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / "a" / "fastsync-tmp").write_bytes(b"")          # not a temporary name: listed
    with_leftovers = tw.walk(os.fsencode(tmp_path), True, 2)
    assert sorted(with_leftovers.leftovers) == [b".a.1-2.fastsync-tmp", b"a/.x.5-6-7.fastsync-tmp",
                                                b"a/b/.y.10-20.fastsync-partial"]
    ref = reference(tmp_path)
    assert listed(with_leftovers) == {p: v for p, v in ref.items() if not os.path.basename(p).startswith(b".")
                                      or not p.endswith((b".fastsync-tmp", b".fastsync-partial"))}
    assert listed(tw.walk(os.fsencode(tmp_path))) == ref        # without: plain entries
    gone = tw.walk(os.fsencode(tmp_path / "missing"))
    assert len(gone) == 0 and gone.errors == [("vanished", b"", errno.ENOENT)]
    not_dir = tw.walk(os.fsencode(tmp_path / "a" / "plain.txt"))
    assert not_dir.errors == [("opendir", b"", errno.ENOTDIR)]


def ref_diff(src: dict, dst: dict, size_only=False, checksum=False, times=False, perms=False, links=False,
             simple_max=0):
    """engine.Sync._plan's decisions, per entry: "unchanged", "simple" (a plain copy C may do)
    or "other" (Python plans it); target entries the source lacks are "other" too."""
    out_src, out_dst, unchanged = {}, set(), 0
    for p, s in src.items():
        d = dst.get(p)
        plain = s[0] == "f" and not s[5] and s[1] < simple_max
        if d is None:
            out_src[p] = "simple" if plain else "other"
            continue
        attrs = (times and s[2] != d[2]) or (perms and s[0] != "l" and s[3] != d[3])
        if s[0] == "f" and d[0] == "f":
            same = s[1] == d[1] and (size_only or s[2] == d[2])
            if same and not checksum and not attrs:
                unchanged += 1
                continue
            if not (same and not checksum) and not (checksum and s[1] == d[1]) and plain:
                out_src[p] = "simple"
                continue
        elif s[0] == "f" and d[0] != "d" and plain:
            out_src[p] = "simple"
            continue
        elif s[0] == "l" and d[0] == "l" and links and not attrs and s[4] == d[4]:
            unchanged += 1
            continue
        out_src[p] = "other"
        out_dst.add(p)
    out_dst |= set(dst) - set(src)
    return out_src, out_dst, unchanged


def change_target(root) -> None:
    """A target made from the same tree, then changed in every way the comparison knows."""
    (root / "a" / "plain.txt").write_bytes(b"different size")
    os.utime(root / "a" / "with space", ns=(1, 1))                       # mtime only
    os.chmod(root / "a" / "-dash", 0o644)                                # mode only
    os.remove(root / "a" / "日本語 ファイル")                              # missing
    os.remove(root / "to file")
    os.symlink("elsewhere", root / "to file")                            # another target
    os.remove(root / "dangling")
    (root / "dangling").write_bytes(b"now a file")                       # a link became a file
    os.rmdir(root / "empty dir")
    (root / "empty dir").write_bytes(b"")                                # a directory became a file
    (root / "extra").mkdir()
    (root / "extra" / "only here").write_bytes(b"x")                     # only in the target


@pytest.mark.parametrize("flags", [
    {},
    {"times": True, "perms": True, "links": True, "simple_max": 1 << 30},
    {"size_only": True, "links": True, "simple_max": 100},
    {"checksum": True, "times": True, "perms": True, "links": True, "simple_max": 1 << 30},
])
def test_diff_decides_as_the_reference(tmp_path, flags):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    make_tree(dst)
    for p in reference(src):      # same mtimes where not changed below
        s = os.lstat(os.path.join(os.fsencode(src), p))
        os.utime(os.path.join(os.fsencode(dst), p), ns=(s.st_mtime_ns, s.st_mtime_ns), follow_symlinks=False)
    change_target(dst)
    a, b = tw.walk(os.fsencode(src)), tw.walk(os.fsencode(dst))
    simple, nbytes, other_src, other_dst, unchanged = tw.diff(a, b, **flags)
    want_src, want_dst, want_unchanged = ref_diff(reference(src), reference(dst), **flags)
    got_src = {a.path(i): "simple" for i in memoryview(simple).cast("i")}
    got_src.update({a.path(i): "other" for i in other_src})
    assert got_src == want_src
    assert {b.path(i) for i in other_dst} == want_dst
    assert unchanged == want_unchanged
    assert nbytes == sum(listed(a)[p][1] for p, v in want_src.items() if v == "simple")
    empty = tw.diff(a, tw.Listing(), **flags)        # no target yet: everything new
    assert empty[3:] == ([], 0) and len(empty[0]) // 4 + len(empty[2]) == len(a)


def test_copy_files_copies_bytes_mode_and_mtime_complete_or_not_at_all(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    (src / "a" / "big").write_bytes(os.urandom(600 << 10))       # copy_file_range, not the buffer
    long_name = "n" * 245       # fits NAME_MAX; its temporary name would not
    (src / "a" / long_name).write_bytes(b"long")
    listing = tw.walk(os.fsencode(src))
    simple = tw.diff(listing, tw.Listing(), simple_max=1 << 30)[0]
    for d, _, _ in os.walk(src):
        os.makedirs(dst / os.path.relpath(d, src), exist_ok=True)
    os.rmdir(dst / "ünï cødé ✓")                                  # its file can't be created
    os.remove(src / "a" / "-dash")                                 # vanished since the listing
    idx = list(memoryview(simple).cast("i"))
    files, nbytes, stages, errs = tw.copy_files(os.fsencode(src), os.fsencode(dst), listing, simple,
                                                b"t1", -1, True, 3)
    errs = list(memoryview(errs).cast("i"))
    got = {listing.path(i): (stages[k], errs[k]) for k, i in enumerate(idx)}
    assert got.pop(b"a/-dash") == (tw.STAGE_READ, errno.ENOENT)
    assert got.pop("ünï cødé ✓/é".encode()) == (tw.STAGE_CREATE, errno.ENOENT)
    assert got.pop(b"a/" + long_name.encode()) == (tw.STAGE_LONG, errno.ENAMETOOLONG)
    assert set(got.values()) == {(tw.STAGE_OK, 0)}
    assert files == len(got) and nbytes == sum(listing.entry(i)[2] for i in idx if listing.path(i) in got)
    for p in got:
        s, d = os.lstat(os.path.join(os.fsencode(src), p)), os.lstat(os.path.join(os.fsencode(dst), p))
        assert (d.st_size, d.st_mtime_ns, d.st_mode) == (s.st_size, s.st_mtime_ns, s.st_mode), p
        with open(os.path.join(os.fsencode(src), p), "rb") as x, open(os.path.join(os.fsencode(dst), p), "rb") as y:
            assert x.read() == y.read(), p
    leftovers = [f for _, _, names in os.walk(dst) for f in names if f.endswith(".fastsync-tmp")]
    assert leftovers == []
    # with a mode given, and one thread: the files get that mode
    dst2 = tmp_path / "dst2"
    os.makedirs(dst2 / "a")
    one = b"".join(i.to_bytes(4, "little") for i in idx if listing.path(i) == b"a/plain.txt")
    old = os.umask(0)
    try:
        assert tw.copy_files(os.fsencode(src), os.fsencode(dst2), listing, one, b"t2", 0o640, False, 1)[0] == 1
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(dst2 / "a" / "plain.txt").st_mode) == 0o640
    with pytest.raises(IndexError):
        tw.copy_files(os.fsencode(src), os.fsencode(dst2), listing, (len(listing)).to_bytes(4, "little"), b"t3")
