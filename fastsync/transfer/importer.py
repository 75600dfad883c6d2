"""`fastsync import`: a table (or its --columns / --where, or a --query) into part files
(formats.FORMATS) or a Kafka topic.

The path of an import: planner.plan (once: reflect, the --incremental range, the splits) ->
one SplitSpec per split, each run by splitread in a process of its own (its reader streams
--fetch-size rows at a time as Arrow record batches into its part file, staged by publish.py:
under a temporary directory beside the target, or on an object store in the target under
names of the run; retried alone on failure, --retries) -> publish: only when every split
succeeded is the directory renamed into place (or its parts added to the target: --append;
or merged onto it by merger: --incremental lastmodified --merge-key) and `_SUCCESS` written
(on an object store: the manifest of the parts, last): a failed import leaves no output and
an existing target untouched. --target-dir is a local path or a URL (filesystems.resolve).
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable

import sqlalchemy as sa

from fastsync.progress import Progress, Update, on_terminal
from fastsync.transfer import planner, publish, splitread
from fastsync.transfer.formats import FileError, part_name
from fastsync.transfer.merger import MergeError, MergeJob, run_merge
from fastsync.transfer.spec import ImportError_, ImportJob, Plan, one_line
from fastsync.transfer.textfile import TextOptions

__all__ = ["ImportError_", "ImportJob", "run_import"]


def _status(total: int | None, t0: float) -> Update:
    """The status line: rows, share of `total` and ETA, rows/s, rows per split."""
    per = tuple(splitread.PROGRESS or ())
    return Update(sum(per), time.perf_counter() - t0, total, per)


def run_import(job: ImportJob, progress: bool | None = None, before_publish: Callable[[], None] | None = None) -> dict:
    """Plan, run the splits in parallel processes, publish. Returns figures (and, for an
    incremental import, the new last value). `before_publish` is called once every split is
    written, just before the output is published: raising keeps the target as it was (a saved
    job's run that lost its ZooKeeper lock must not publish)."""
    if job.cluster:
        from fastsync.transfer import cluster
        with cluster.starting(job.cluster, job.url):       # local:N's workers start while this plans
            return _run_import(job, progress, before_publish)
    return _run_import(job, progress, before_publish)


def _run_import(job: ImportJob, progress: bool | None, before_publish: Callable[[], None] | None) -> dict:
    if job.kafka_topic:
        return _run_to_kafka(job)
    try:
        loc = publish.locate(job.target_dir, "--target-dir")
        present = publish.exists(loc)
    except publish.PublishError as exc:
        raise ImportError_(str(exc)) from None
    target = loc.path if loc.local else job.target_dir
    if job.merge_key and job.incremental != "lastmodified":
        raise ImportError_("--merge-key works with --incremental lastmodified")
    onto = bool(job.merge_key) and present and not job.delete_target_dir     # merge the new rows onto the target
    adding = job.append or job.incremental == "append"
    exists = present and not job.delete_target_dir
    if exists and job.incremental == "lastmodified" and not (onto or job.append):
        raise ImportError_("--incremental lastmodified into the existing --target-dir %s needs --merge-key or --append" % job.target_dir)
    if exists and not (adding or onto):
        raise ImportError_("--target-dir %s already exists (use --delete-target-dir to replace it, or --append)" % job.target_dir)
    try:
        ext = job.output().extension()
    except FileError as exc:
        raise ImportError_(str(exc)) from None
    t0 = time.perf_counter()
    found = _plan_or_fail(job)
    if onto and job.merge_key not in found.names():
        raise ImportError_("--merge-key %s: no such column in the imported data" % job.merge_key)
    try:
        # nothing to merge onto: the new rows replace the target
        merging = onto and any(n.startswith("part-m-") for n in _listing(loc))
        appending = adding and exists and not onto
        mode = "append" if appending else "replace" if present else "new"
        stage = publish.temporary(loc) if merging else publish.start(loc, append=appending)
    except publish.PublishError as exc:
        raise ImportError_(str(exc)) from None
    try:
        rows = _run_splits(job, found, stage, ext, progress, t0)
        if before_publish is not None:
            before_publish()
        if merging:
            _merge_into(stage, loc, job, found, progress)
        else:
            publish.finish(stage, mode)
    except publish.PublishError as exc:
        publish.discard(stage)
        raise ImportError_(str(exc)) from None
    except BaseException:
        publish.discard(stage)
        raise
    return _figures(found, rows, t0, target_dir=target)


def _listing(loc) -> list[str]:
    with publish.failing("--target-dir", loc):
        return publish.listing(loc)


def _plan_or_fail(job: ImportJob) -> Plan:
    try:
        return planner.plan(job)
    except sa.exc.SQLAlchemyError as exc:
        raise ImportError_("%s: %s" % (job.url.render_as_string(hide_password=True), one_line(exc))) from None


def _run_splits(job: ImportJob, found: Plan, stage: publish.Staging | str, ext: str, progress: bool | None,
                t0: float) -> int:
    """Every split in a process of its own, writing its part (stage.part; a str: a local
    directory); the rows read."""
    if job.cluster:          # every split a task on a Dask cluster instead (cluster.py)
        from fastsync.transfer import cluster
        return cluster.run_import_splits(job, found, stage, ext, progress, t0)
    splits = found.splits
    rows = 0
    try:
        ctx = multiprocessing.get_context("fork")
        show = on_terminal(progress)
        splitread.PROGRESS = ctx.Array("q", len(splits), lock=False) if show else None
        total = planner.estimate_rows(job, found) if show is True else None     # a callback: no COUNT(*)
        with cf.ProcessPoolExecutor(max_workers=min(len(splits), max(job.mappers, 1)), mp_context=ctx) as pool:
            futures = [pool.submit(splitread.run_with_retries, split_spec(job, found, s, stage, ext)) for s in splits]
            with Progress(lambda: _status(total, t0), show=show, name="import-progress"):
                cf.wait(futures)
            for f in futures:
                n, _ = f.result()
                rows += n
    finally:
        splitread.PROGRESS = None
    return rows


def split_spec(job: ImportJob, found: Plan, split, stage: publish.Staging | str, ext: str):
    """Split `split`'s work: its part file in `stage`, and the filesystem's URL where it is not local."""
    if isinstance(stage, str):
        return found.spec(job, split, os.path.join(stage, part_name(split.index, ext)))
    return found.spec(job, split, stage.part(split.index, ext), stage.fs_url)


def _figures(found: Plan, rows: int, t0: float, **where) -> dict:
    seconds = time.perf_counter() - t0
    out = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0,
           "splits": len(found.splits), **where}
    inc = found.incremental
    if inc is not None:
        out["last_value"] = inc[1] if inc[1] is not None else inc[0]
    return out


def _run_to_kafka(job: ImportJob, progress: bool | None = None) -> dict:
    """--kafka-topic: the splits produce messages; the import succeeds once every split's
    messages are acknowledged (a split retried after a failure may send some twice)."""
    import tempfile
    if job.merge_key:
        raise ImportError_("--merge-key does not apply to --kafka-topic (a topic is appended to)")
    if job.kafka_key and job.kafka_format == "arrow":
        raise ImportError_("--kafka-key: messages of --kafka-format arrow hold many rows and have no key")
    t0 = time.perf_counter()
    found = _plan_or_fail(job)
    if job.kafka_key and job.kafka_key not in found.names():
        raise ImportError_("--kafka-key %s: no such column in the import" % job.kafka_key)
    tmp = tempfile.mkdtemp(prefix="fastsync-kafka-")   # the part paths are unused
    try:
        rows = _run_splits(job, found, tmp, "none", progress, t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _figures(found, rows, t0, target_dir="kafka topic %s" % job.kafka_topic, kafka_topic=job.kafka_topic)


def _merge_into(stage: publish.Staging, loc, job: ImportJob, found: Plan, progress: bool | None) -> None:
    """The new rows (the part files staged) merged onto the target's by `fastsync merge`'s
    streaming merge: a target row whose --merge-key came again is replaced, a key repeated
    in the new rows keeps its last row; the result is one part file, published as merge
    publishes (the old target stays until the new one is complete)."""
    text = dataclasses.replace(job.text or TextOptions(), fields_terminated_by=job.fields_terminated_by)
    merge = MergeJob(new_data=stage.location(), onto=loc, target_dir=loc, merge_key=job.merge_key,
                     columns=found.names(), text=text, delete_target_dir=True, single_file=True)
    try:
        run_merge(merge, progress)
    except MergeError as exc:
        raise ImportError_("--merge-key %s: merging into --target-dir %s: %s" % (job.merge_key, job.target_dir, exc)) from None
    publish.discard(stage)
