"""Checkpoint storage through pyarrow.fs: ``<root>/<job>/checkpoint_<step>``, committed atomically.

A checkpoint directory is uploaded first and committed last by writing ``_ainative_meta.json``
(to a temporary name, then moved into place). On local storage every file and directory of the
checkpoint is fsynced before that rename and the directory after it, so the commit survives a
power loss, not only a killed process; retention deletes the meta file first (un-commits) and
then the rest. Only directories with that file count, so a
partially written checkpoint is never picked up, wherever the writer died. The writer is the
rank-0 worker itself: once its ``report(..., checkpoint=...)`` returns, the checkpoint is durable
and listed, so no checkpoint can be reported, written and then lost by the controller.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ainative import errors

META = "_ainative_meta.json"
DATA_STATE = "_ainative_data_state.json"
_DIR = re.compile(r"^checkpoint_(\d+)$")


def _resolve(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    return pafs.FileSystem.from_uri(uri)


class Storage:
    """The checkpoints of one job under ``<root>/<job_name>``; picklable (re-resolved lazily)."""

    def __init__(self, root: str, job_name: str, keep: int | None) -> None:
        self.root = root
        self.job_name = job_name
        self.keep = keep
        self._fs: Any = None
        self._base = ""

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "job_name": self.job_name, "keep": self.keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["job_name"], state["keep"])  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        if self._fs is None:
            fs, base = _resolve(self.root)
            self._fs, self._base = fs, f"{base.rstrip('/')}/{self.job_name}"
        return self._fs

    @property
    def base(self) -> str:
        _ = self.fs
        return self._base

    @property
    def is_local(self) -> bool:
        import pyarrow.fs as pafs

        return isinstance(self.fs, pafs.LocalFileSystem)

    def path_of(self, step: int) -> str:
        return f"{self.base}/checkpoint_{step}"

    def uri_of(self, step: int) -> str:
        """What users see: a plain path for local storage, else the URI."""
        if self.is_local:
            return self.path_of(step)
        return f"{self.root.rstrip('/')}/{self.job_name}/checkpoint_{step}"

    def probe(self) -> None:
        """Raise CheckpointError unless ``<root>/<job>`` can be created and written."""
        probe = f"{self.base}/.write_probe_{uuid.uuid4().hex[:8]}"
        try:
            self.fs.create_dir(self.base, recursive=True)
            with self.fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self.fs.delete_file(probe)
        except Exception as exc:
            raise errors.CheckpointError(
                f"checkpoint path {self.root!r} cannot be written ({type(exc).__name__}: {exc}); "
                "set CheckpointConfig(path=...) to a writable directory or URI",
                path=self.root) from None

    def committed(self) -> list[int]:
        """Steps of committed checkpoints, oldest first."""
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True))
        except Exception as exc:
            raise errors.CheckpointError(f"cannot list checkpoints under {self.base}: {exc}") from None
        steps = []
        for info in infos:
            m = _DIR.match(info.base_name)
            if m and info.type == pafs.FileType.Directory:
                meta = self.fs.get_file_info(f"{info.path}/{META}")
                if meta.type == pafs.FileType.File:
                    steps.append(int(m.group(1)))
        return sorted(steps)

    def latest(self) -> int | None:
        steps = self.committed()
        return steps[-1] if steps else None

    def read_meta(self, step: int) -> dict[str, Any]:
        with self.fs.open_input_stream(f"{self.path_of(step)}/{META}") as f:
            return dict(json.loads(f.read().decode("utf-8")))

    def commit(self, step: int, local_dir: str, metrics: Mapping[str, Any],
               data_state: Mapping[str, Any] | None) -> str:
        """Upload ``local_dir`` as ``checkpoint_<step>`` and commit it; returns its path/URI."""
        import pyarrow.fs as pafs

        if not os.path.isdir(local_dir):
            raise errors.CheckpointError(
                f"report(checkpoint={local_dir!r}): not a directory; pass a local directory "
                "holding the checkpoint files", path=local_dir)
        dest = self.path_of(step)
        try:
            self.fs.delete_dir(dest)  # a partial leftover of a crashed writer
        except (FileNotFoundError, OSError):
            pass
        try:
            self.fs.create_dir(dest, recursive=True)
            pafs.copy_files(local_dir, dest, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)
            if data_state:
                self._write(f"{dest}/{DATA_STATE}", json.dumps(data_state, default=str))
            meta = {"step": step, "time": time.time(), "metrics": dict(metrics)}
            self._write(f"{dest}/{META}.tmp", json.dumps(meta, default=str))
            if self.is_local:
                _fsync_tree(dest)  # the files and their directories reach the disk first ...
            self.fs.move(f"{dest}/{META}.tmp", f"{dest}/{META}")  # ... then the commit point
            if self.is_local:
                _fsync_dir(dest)  # ... and the rename itself
        except errors.CheckpointError:
            raise
        except Exception as exc:
            raise errors.CheckpointError(
                f"could not write checkpoint {dest}: {type(exc).__name__}: {exc}", path=dest) from None
        self._retain(step)
        return self.uri_of(step)

    def _write(self, path: str, text: str) -> None:
        with self.fs.open_output_stream(path) as f:
            f.write(text.encode("utf-8"))

    def _retain(self, newest: int) -> None:
        steps = self.committed()
        doomed = steps[:-self.keep] if self.keep is not None else []
        for step in doomed:
            try:
                # Un-commit first: a crash in the middle of deleting the files must not leave a
                # directory that still looks committed but misses some of them.
                self.fs.delete_file(f"{self.path_of(step)}/{META}")
                self.fs.delete_dir(self.path_of(step))
            except (FileNotFoundError, OSError):
                pass

    def data_state(self, step: int) -> dict[str, Any] | None:
        path = f"{self.path_of(step)}/{DATA_STATE}"
        import pyarrow.fs as pafs

        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            return dict(json.loads(f.read().decode("utf-8")))

    def local_copy(self, step: int) -> str:
        """A local directory with checkpoint ``step``: the directory itself on local storage."""
        import pyarrow.fs as pafs

        if self.is_local:
            return self.path_of(step)
        target = tempfile.mkdtemp(prefix=f"ainative-ckpt-{step}-")
        pafs.copy_files(self.path_of(step), target, source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return target


def _fsync_tree(root: str) -> None:
    """fsync every file under ``root``, then every directory bottom-up, then ``root``'s parent
    (which holds ``root``'s own entry): a rename after this commits data that is on the disk."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(dirpath)
    _fsync_dir(os.path.dirname(root.rstrip("/")) or "/")


def _fsync_dir(path: str) -> None:
    """Make a directory's entries (created, renamed files) durable; a no-op where directories
    cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the data fsyncs stood
        pass
    finally:
        os.close(fd)
