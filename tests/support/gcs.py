"""A real gcp-storage-emulator on 127.0.0.1, started by the test suite (no mocks of GCS)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fsspec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self) -> None:
        self.port = _free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.data_dir = tempfile.mkdtemp(prefix="gcs-emulator-")
        exe = Path(sys.executable).with_name("gcp-storage-emulator")
        self.proc = subprocess.Popen(
            [str(exe), "start", "--host", "127.0.0.1", "--port", str(self.port),
             "--in-memory", "--default-bucket", "trajcorpus-test"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("gcp-storage-emulator exited at start") from None
                time.sleep(0.1)
        else:
            raise RuntimeError("gcp-storage-emulator did not start in 30 s")
        os.environ["STORAGE_EMULATOR_HOST"] = self.host
        os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("gcs", endpoint_url=self.host, token="anon", skip_instance_cache=True)

    def upload(self, local: str | Path, dest: str) -> str:
        """Copy a local file or folder to gs://trajcorpus-test/<dest>; return its gs:// URI."""
        fs = self.fs()
        local = Path(local)
        target = f"trajcorpus-test/{dest.strip('/')}"
        if local.is_dir():
            for p in sorted(local.rglob("*")):
                if p.is_file():
                    fs.put_file(str(p), f"{target}/{p.relative_to(local).as_posix()}")
        else:
            fs.put_file(str(local), target)
        fs.invalidate_cache()
        return f"gs://{target}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
