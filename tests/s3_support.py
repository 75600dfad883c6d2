"""A real S3-compatible server for the tests of s3:// targets: moto's server mode
(`python -m moto.server`, from moto[server]) in a process of its own, on a free port of
18600-18699, its state in memory (gone when it stops).

    server = MotoServer().start()        # waits until it answers
    server.endpoint                      # "http://127.0.0.1:<port>"
    server.env                           # what a fastsync process needs to reach it
    server.filesystem()                  # a pyarrow S3FileSystem on it
    server.make_bucket("b")
    server.stop()

fastsync reaches it as any S3: the endpoint from AWS_ENDPOINT_URL, the credentials from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (moto takes any).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

from e2e_support import wait_for_port

PORTS = range(18600, 18700)
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in %d-%d for moto's server" % (PORTS[0], PORTS[-1]))


class MotoServer:
    def __init__(self):
        self.port = None
        self.proc = None
        self.log = None

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    @property
    def env(self) -> dict:
        """The environment of a process that talks to this server (and to no real AWS)."""
        return {**ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> "MotoServer":
        self.port = _free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="moto-%d-" % self.port, suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **ENV})
        try:
            wait_for_port(self.port, timeout=60, alive=lambda: self.proc.poll() is None)
        except AssertionError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.log is not None:
            self.log.close()
            os.unlink(self.log.name)
            self.log = None

    def filesystem(self):
        import pyarrow.fs as pafs
        return pafs.S3FileSystem(access_key=ENV["AWS_ACCESS_KEY_ID"], secret_key=ENV["AWS_SECRET_ACCESS_KEY"],
                                 endpoint_override="127.0.0.1:%d" % self.port, scheme="http", region=ENV["AWS_REGION"],
                                 allow_bucket_creation=True, allow_bucket_deletion=True)

    def make_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)
