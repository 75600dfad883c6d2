"""`fastsync sync -a` (at each --jobs value) against Debian's `rsync -a` (/usr/bin/rsync), local
to local, same trees, same filesystem, same run, each tool going first in turn:

    small initial     SRC/small/ (10 000 files of 0-8 KiB in 100 directories) into a new directory
    big initial       SRC/big/ (4 files of 256 MiB of incompressible data, no holes) into a new directory
    resync unchanged  SRC/ onto the finished copy: nothing to do but compare
    resync 1%         SRC/ after 1 % of the small files were rewritten (new bytes, new mtime)

Each target is checked after every run (file count, total bytes; the rewritten files' bytes);
the peak memory of each tool's process tree (PSS, sampled every 20 ms) comes from one more,
separately measured run of each scenario, so the sampling does not slow the timed ones.

    python bench/sync_vs_rsync.py [--dir /dev/shm/fastsync-sync-bench] [--rounds 3] [--jobs 4,1] [--json FILE] [--no-site]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

from tpch_import import measure

RSYNC = "/usr/bin/rsync"
SCENARIOS = ("small initial", "big initial", "resync unchanged", "resync 1%")


def make_source(src: str, files: int, big: int, big_mb: int) -> None:
    block = os.urandom(16 << 20)
    for i in range(files):
        d = os.path.join(src, "small", "d%02d" % (i % 100))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "file %05d.dat" % i), "wb") as f:
            f.write(block[i * 7919 % (8 << 20):][:(i * 2654435761) % 8193])
    os.makedirs(os.path.join(src, "big"), exist_ok=True)
    for i in range(big):
        with open(os.path.join(src, "big", "big%d.bin" % i), "wb") as f:
            for j in range(0, big_mb, 16):
                f.write(i.to_bytes(4, "little") + j.to_bytes(4, "little") + block[8:min(16, big_mb - j) << 20])


def tree_sum(root: str) -> tuple[int, int]:
    n = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            n += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return n, size


def change_one_percent(src: str, files: int, generation: int) -> list[str]:
    """Rewrites 1 % of the small files (same size, new bytes, new mtime); their paths."""
    changed = []
    for i in range(generation % 100, files, 100):
        p = os.path.join(src, "small", "d%02d" % (i % 100), "file %05d.dat" % i)
        size = os.path.getsize(p)
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        t = time.time() + generation
        os.utime(p, (t, t))
        changed.append(p)
    return changed


PYTHON_FLAGS: list[str] = []     # --no-site: ["-S"]


def commands(tool: str, src: str, dst: str) -> list[str]:
    """tool: "rsync", or "fastsync-jN" (fastsync sync -a -j N)."""
    if tool == "rsync":
        return [RSYNC, "-a", src, dst]
    return [sys.executable, *PYTHON_FLAGS, "-m", "fastsync", "sync", "-a", "-j", tool.rpartition("-j")[2], src, dst]


def no_site() -> None:
    """fastsync started with `python -S` (no site module), its package found through
    PYTHONPATH: a start-up as with a regular install. This venv holds fastsync as an editable
    install (`pip install -e`), whose site hook imports pathlib, re, urllib.parse... at every
    start of Python (~20 ms of CPU); a local sync imports nothing from site-packages."""
    import importlib.util

    spec = importlib.util.find_spec("fastsync")
    if spec is None or not spec.origin:
        raise SystemExit("bench: fastsync not found")
    root = os.path.dirname(os.path.dirname(spec.origin))
    os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    PYTHON_FLAGS[:] = ["-S"]


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, of the process and every child it waited
    for: rsync's receiver and generator, fastsync's workers): on a loaded machine the CPU time
    says more than the wall time."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    if p.returncode != 0:
        raise SystemExit("bench: %s failed (exit %d): %s" % (" ".join(cmd[:6]), p.returncode, p.stderr.strip()[-500:]))
    return wall, cpu


def check(src: str, dst: str, changed: list[str] = ()) -> None:
    a, b = tree_sum(src), tree_sum(dst)
    if a != b:
        raise SystemExit("bench: %s has %d files, %d bytes; %s has %d files, %d bytes" % (src, *a, dst, *b))
    for p in changed:
        q = os.path.join(dst, os.path.relpath(p, src))
        with open(p, "rb") as x, open(q, "rb") as y:
            if x.read() != y.read():
                raise SystemExit("bench: %s differs from %s" % (q, p))


def uptime() -> str:
    with open("/proc/loadavg") as f:
        return "load average %s" % ", ".join(f.read().split()[:3])


def run_round(base: str, src: str, files: int, order: list[str], generation: int, mem: bool) -> dict:
    """The four scenarios once for each tool (in `order`); {scenario: {tool: seconds or peak bytes}}."""
    out: dict = {s: {} for s in SCENARIOS}

    def go(tool: str, s: str, a: str, b: str, changed=()):
        cmd = commands(tool, a, b)
        out[s][tool] = measure(cmd)[1] if mem else timed(cmd)
        check(a.rstrip("/"), b, changed)

    for tool in order:
        shutil.rmtree(os.path.join(base, tool), ignore_errors=True)
        os.makedirs(os.path.join(base, tool))       # rsync makes only the last level of DST
    for tool in order:
        go(tool, "small initial", src + "/small/", os.path.join(base, tool, "small"))
    for tool in order:
        go(tool, "big initial", src + "/big/", os.path.join(base, tool, "big"))
    for tool in order:
        go(tool, "resync unchanged", src + "/", os.path.join(base, tool))
    changed = change_one_percent(src, files, generation)
    for tool in order:
        go(tool, "resync 1%", src + "/", os.path.join(base, tool), changed)
    return out


def compiled() -> None:
    """The fastsync the commands import gets its bytecode written first, as `pip install` does:
    with PYTHONDONTWRITEBYTECODE set (as in CI here) a checkout's modules are compiled again at
    every start, ~40 ms of each run that an installed fastsync does not pay."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("fastsync")
    if spec is not None and spec.origin:
        compileall.compile_dir(os.path.dirname(spec.origin), quiet=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/dev/shm/fastsync-sync-bench", help="where the trees go (both tools: same filesystem)")
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=4, help="big files")
    ap.add_argument("--big-mb", type=int, default=256, help="MiB per big file")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", default="4,1", help="fastsync -j values, each measured in the same rounds (comma-separated)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the trees")
    ap.add_argument("--no-site", action="store_true",
                    help="start fastsync with python -S (as a regular install starts: no editable-install hook)")
    args = ap.parse_args(argv)
    if args.no_site:
        no_site()
    tools = ["rsync"] + ["fastsync-j%d" % int(j) for j in args.jobs.split(",")]
    compiled()
    base = os.path.abspath(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    src = os.path.join(base, "src")
    make_source(src, args.files, args.big, args.big_mb)
    n, size = tree_sum(src)
    print("trees in %s: %d files, %.1f MB; %s; %s" % (base, n, size / 1e6, ", ".join(tools), uptime()), flush=True)
    times: dict = {s: {t: [] for t in tools} for s in SCENARIOS}
    cpus: dict = {s: {t: [] for t in tools} for s in SCENARIOS}
    loads = []
    try:
        for r in range(args.rounds):
            order = tools[r % len(tools):] + tools[:r % len(tools)]      # each tool goes first in turn
            res = run_round(base, src, args.files, order, r + 1, mem=False)
            loads.append(uptime())
            for s in SCENARIOS:
                for tool in order:
                    times[s][tool].append(res[s][tool][0])
                    cpus[s][tool].append(res[s][tool][1])
            print("round %d (%s first): %s; %s" % (r + 1, order[0], "; ".join(
                "%s: %s" % (s, ", ".join("%s %.3f s" % (t, res[s][t][0]) for t in tools)) for s in SCENARIOS),
                loads[-1]), flush=True)
        peaks = run_round(base, src, args.files, tools, args.rounds + 1, mem=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    results = []
    print("\n| scenario | tool | wall (median s) | rsync / this | CPU s (median) | peak PSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in SCENARIOS:
        base_wall = statistics.median(times[s]["rsync"])
        for t in tools:
            wall, cpu = statistics.median(times[s][t]), statistics.median(cpus[s][t])
            results.append({"scenario": s, "tool": t, "wall_s": times[s][t], "cpu_s": cpus[s][t],
                            "ratio": base_wall / wall, "peak": peaks[s][t]})
            print("| %s | %s | %.3f | %.2f | %.3f | %.1f MB |" % (s, t, wall, base_wall / wall, cpu, peaks[s][t] / 1e6))
    report = {"files": n, "bytes": size, "dir": base, "tools": tools, "rounds": args.rounds, "loads": loads,
              "python_flags": PYTHON_FLAGS,
              "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
