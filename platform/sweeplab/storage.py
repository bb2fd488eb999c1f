"""Where a sweep's files live: a local folder, or a prefix in an S3-compatible bucket (``s3://bucket/prefix``).

Every file the core writes or reads goes through a :class:`Location`, a ``pyarrow.fs`` filesystem plus a path in
it, so the same code serves a laptop, a shared NFS/EFS folder and object storage. For ``s3://`` the filesystem is
built here from the standard AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_DEFAULT_REGION`` / ``AWS_REGION``):
pyarrow's own ``S3FileSystem`` ignores the endpoint variable, and Ray builds its storage through pyarrow, so the
same filesystem object is handed to Ray (``storage_filesystem``). It pickles without credentials
(:class:`EnvS3FileSystem`): every process that unpickles it, a Ray worker on any node included, builds it from its
own AWS variables. Any S3-compatible store works (MinIO, Ceph, moto).

Writes are atomic: on a local filesystem a file is written under a temporary name in the same folder, synced and
renamed into place; on object storage one ``PUT`` is atomic by itself (an object is visible whole or not at all).
:meth:`Location.create_exclusive` is the one conditional write (``O_EXCL`` locally, ``If-None-Match: *`` on S3):
the sweep lock is built on it. Local files are created with :data:`FILE_MODE` less the umask, as ``open()`` does
(not ``mkstemp``'s 0600, which would hide a shared folder's tables from its other users).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import secrets
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs

S3_SCHEME = "s3://"
FILE_MODE = 0o666  # local files: this less the umask (module docstring)


class StorageError(OSError):
    """Storage that cannot be reached or used (a missing bucket, refused credentials, an unreachable endpoint)."""


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


class EnvS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem, pickled as "rebuild from the AWS variables of the process that unpickles it".

    Ray pickles the ``storage_filesystem`` it is given into the experiment's state (``tuner.pkl``, the search
    state) and into every trial and Train worker. pyarrow's own pickle carries the access and secret keys, which
    would then lie in the bucket and travel to every node; this one carries nothing, and each process builds its
    filesystem from its own environment (the variables of the process that started Ray or the node, or the job's
    ``env_vars``, see :mod:`sweeplab.submit`)."""

    def __reduce__(self):
        return s3_filesystem, ()


def s3_filesystem() -> EnvS3FileSystem:
    """A pyarrow S3 filesystem from the standard AWS variables (credentials left to the AWS default chain when the
    key variables are not set: an instance role, ``~/.aws/credentials``)."""
    kwargs = {"region": _region(), "connect_timeout": 5.0, "request_timeout": 30.0,
              "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3)}
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs.update(access_key=os.environ["AWS_ACCESS_KEY_ID"],
                      secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                      session_token=os.environ.get("AWS_SESSION_TOKEN") or None)
    if endpoint := _endpoint():
        scheme, sep, rest = endpoint.partition("://")
        kwargs.update(endpoint_override=rest if sep else scheme, scheme=scheme if sep else "https")
    return EnvS3FileSystem(**kwargs)


def boto3_client():
    """A boto3 S3 client with the same settings (used only for the conditional put of the sweep lock, which
    pyarrow does not offer)."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=_endpoint(), region_name=_region(),
                        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}))


@dataclasses.dataclass(frozen=True)
class Location:
    """A file or folder: ``fs`` is a ``pyarrow.fs.FileSystem``, ``path`` a path in it (``bucket/key`` on S3, an
    absolute POSIX path locally). ``str()`` gives what a user types: ``s3://bucket/key`` or the local path."""
    fs: pafs.FileSystem
    path: str

    # ---- naming
    @property
    def is_s3(self) -> bool:
        return self.fs.type_name == "s3"

    @property
    def uri(self) -> str:
        return S3_SCHEME + self.path if self.is_s3 else self.path

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, part: str) -> "Location":
        return Location(self.fs, posixpath.join(self.path, str(part)))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> "Location":
        return Location(self.fs, posixpath.dirname(self.path.rstrip("/")))

    @property
    def local_path(self) -> Path | None:
        """The path on this machine's filesystem, or None for object storage."""
        return None if self.is_s3 else Path(self.path)

    # ---- reading
    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def _info(self) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path)
        except OSError as exc:
            raise StorageError(f"cannot reach {self.uri}: {exc}") from exc

    def read_bytes(self) -> bytes:
        try:
            with self.fs.open_input_stream(self.path) as fh:
                return fh.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if not self.exists():
                raise FileNotFoundError(f"no such file: {self.uri}") from None
            raise StorageError(f"cannot read {self.uri}: {exc}") from exc

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def files(self, suffix: str = "") -> list["Location"]:
        """The files directly in this folder (sorted by name; none when the folder does not exist)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot reach {self.uri} (listing it): {exc}") from exc
        return sorted((Location(self.fs, i.path) for i in infos
                       if i.type == pafs.FileType.File and i.base_name.endswith(suffix)
                       and not i.base_name.startswith(".")), key=lambda loc: loc.path)

    def folders(self) -> list["Location"]:
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot reach {self.uri} (listing it): {exc}") from exc
        return sorted((Location(self.fs, i.path) for i in infos if i.type == pafs.FileType.Directory),
                      key=lambda loc: loc.path)

    def walk_files(self) -> Iterator["Location"]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
        for i in infos:
            if i.type == pafs.FileType.File:
                yield Location(self.fs, i.path)

    # ---- writing
    def write_bytes(self, data: bytes) -> None:
        """Write the whole file atomically (see the module docstring)."""
        if self.is_s3:
            try:
                with self.fs.open_output_stream(self.path) as fh:
                    fh.write(data)
            except OSError as exc:
                raise StorageError(f"cannot write {self.uri}: {exc}") from exc
            return
        with self.open_output() as sink:
            sink.write(data)

    @contextlib.contextmanager
    def open_output(self) -> Iterator[Any]:
        """A stream for writing the whole file, made visible atomically when the block ends without error (a
        temporary file renamed locally; on S3 the bytes are sent in one ``PUT`` at the end)."""
        if self.is_s3:
            sink = pa.BufferOutputStream()
            yield sink
            self.write_bytes(sink.getvalue().to_pybytes())
            return
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        try:
            with pa.OSFile(tmp, "wb") as sink:
                yield sink
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _sync_dir(path.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def append_text(self, text: str) -> None:
        """Add ``text`` at the end of the file (created when missing). Locally an ``O_APPEND`` write; object
        storage cannot append, so there the file is read and written whole (fine for small, throttled logs)."""
        if self.is_s3:
            try:
                old = self.read_bytes()
            except FileNotFoundError:
                old = b""
            self.write_bytes(old + text.encode())
            return
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)

    def create_exclusive(self, data: bytes) -> bool:
        """Create the file only if it does not exist; True when this call created it."""
        if self.is_s3:
            from botocore.exceptions import ClientError
            bucket, _, key = self.path.partition("/")
            try:
                boto3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise StorageError(f"cannot write {self.uri}: {exc}") from exc
            return True
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def delete_tree(self) -> None:
        """Delete the folder and everything in it (nothing when it is already gone)."""
        try:
            if self.exists():
                self.fs.delete_dir(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {self.uri}: {exc}") from exc

    def delete(self) -> None:
        """Delete the file (nothing when it is already gone)."""
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if self.exists():
                raise StorageError(f"cannot delete {self.uri}: {exc}") from exc



def _sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the file's own data was synced before the rename)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_problem(text: str) -> str | None:
    """Why ``text`` cannot be a sweep's storage (None when it can): the one statement of the storage rules. A local
    path (relative ones are taken from the working directory), or ``s3://bucket[/prefix]``; no other scheme."""
    if text.startswith(S3_SCHEME):
        return None if text[len(S3_SCHEME):].strip("/") else f"{text!r} names no bucket (s3://bucket/prefix)"
    if "://" in text:
        return f"{text!r}: use a folder every node shares or an s3:// URI"
    return None


def ray_storage(loc: Location) -> dict[str, Any]:
    """``storage_path`` (and ``storage_filesystem`` for object storage) of a Ray Tune or Train run config."""
    return {"storage_path": loc.path, "storage_filesystem": loc.fs} if loc.is_s3 else {"storage_path": loc.path}


def location(target: "str | os.PathLike | Location") -> Location:
    """``s3://bucket/prefix`` or a local path (made absolute) as a :class:`Location` (ValueError naming the
    problem for anything else, see :func:`storage_problem`)."""
    if isinstance(target, Location):
        return target
    text = os.fspath(target)
    if (problem := storage_problem(text)) is not None:
        raise ValueError(problem)
    if text.startswith(S3_SCHEME):
        return Location(s3_filesystem(), text[len(S3_SCHEME):].strip("/"))
    return Location(pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix())


def check_bucket(loc: Location) -> str | None:
    """None when the bucket of an S3 location exists and answers with these credentials, else the reason."""
    if not loc.is_s3:
        return None
    bucket = loc.path.split("/", 1)[0]
    try:
        info = loc.fs.get_file_info(bucket)
    except OSError as exc:
        return f"cannot reach bucket {bucket!r} at {_endpoint() or 'AWS S3'}: {exc}"
    if info.type == pafs.FileType.NotFound:
        return f"bucket {bucket!r} does not exist at {_endpoint() or 'AWS S3'}"
    return None
