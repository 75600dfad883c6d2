"""Where files go: a local path or a filesystem URL resolved to a pyarrow filesystem, for the
transfers (import --target-dir, export --export-dir, merge) and the file sinks alike.

    resolve("out/t")                       local disk
    resolve("file:///data/t")              local disk
    resolve("hdfs://127.0.0.1:8020/u/t")   HDFS: pyarrow's libhdfs where the machine has it,
                                           else WebHDFS (fastsync.hdfs chooses, and logs it)
    resolve("s3://bucket/t")               pyarrow's S3 filesystem; AWS_ENDPOINT_URL (or
                                           FASTSYNC_S3_ENDPOINT) points it at an S3-compatible server
    resolve("gs://bucket/t")               pyarrow's GCS filesystem, retrying at most
                                           $FASTSYNC_GCS_RETRY_SECONDS (20)
    resolve("abfs://...")                  any other scheme pyarrow knows (FileSystem.from_uri)

A Location says whether its filesystem renames a directory at once (local disk, HDFS: a
transfer publishes by rename) or not (object stores: a transfer publishes a manifest).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

RENAMING = ("", "file", "local", "hdfs", "webhdfs", "viewfs")   # schemes whose directory rename is atomic


class FilesystemError(Exception):
    """A filesystem URL can't be used; one line naming the URL."""


@dataclass
class Location:
    fs: pafs.FileSystem
    path: str          # the path inside fs
    url: str           # as the user gave it, for messages
    renames: bool      # a directory rename is atomic here

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, *names: str) -> str:
        """A path inside fs below this location."""
        return "/".join([self.path.rstrip("/"), *names])


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def resolve(url: str) -> Location:
    """The filesystem and path of a local path or URL; FilesystemError if it can't be reached."""
    scheme = scheme_of(url)
    try:
        if scheme in ("", "local"):
            path = url.split("://", 1)[1] if scheme else url
            return Location(pafs.LocalFileSystem(), os.path.abspath(path), url, True)
        if scheme == "file":
            return Location(pafs.LocalFileSystem(), os.path.abspath(urlsplit(url).path), url, True)
        if scheme in ("hdfs", "webhdfs", "viewfs"):
            from fastsync import hdfs
            parts = urlsplit(url)
            fs = hdfs.connect(scheme, parts.hostname or "localhost", parts.port)
            return Location(fs, parts.path or "/", url, True)
        if scheme == "s3":
            return _s3(url)
        if scheme in ("gs", "gcs"):
            return _gcs(url)
        fs, path = pafs.FileSystem.from_uri(url)
        return Location(fs, path, url, scheme in RENAMING)
    except FilesystemError:
        raise
    except (pa.ArrowException, OSError, ValueError, ImportError) as exc:
        raise FilesystemError("%s: %s" % (url, " ".join(str(exc).split()) or type(exc).__name__)) from None


def _gcs(url: str) -> Location:
    # pyarrow's default retries a request for 15 minutes: an unreachable store (or no
    # credentials) must fail within a bounded wait, as the other stores do
    import datetime
    parts = urlsplit(url)
    seconds = float(os.environ.get("FASTSYNC_GCS_RETRY_SECONDS") or 20)
    fs = pafs.GcsFileSystem(retry_time_limit=datetime.timedelta(seconds=seconds))
    return Location(fs, (parts.netloc + parts.path).rstrip("/"), url, False)


def _s3(url: str) -> Location:
    parts = urlsplit(url)
    endpoint = os.environ.get("FASTSYNC_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict = {}
    if endpoint:
        e = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        kwargs.update(endpoint_override=e.netloc, scheme=e.scheme or "http")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    fs = pafs.S3FileSystem(**kwargs)
    return Location(fs, (parts.netloc + parts.path).rstrip("/"), url, False)
