"""Object store: where photos, crops, embeddings and media of jobs (and the gallery) live.

One small interface, two backends:

    LocalStore(root)           a folder (embedded default); links are signed, expiring API URLs
    S3Store(bucket, endpoint)  any S3 API (MinIO, SeaweedFS, AWS) through boto3; presigned GETs

Keys are ``/``-separated relative names (``jobs/<id>/original``); a key never starts with
``/`` and never holds ``..``. Writes are whole-object and atomic, so a redelivered task that
rewrites the same key leaves one complete object.

Transient faults (the store is down, a timeout) raise :class:`StorageUnavailable`, which the
workers retry with backoff; a missing object raises :class:`ObjectMissing`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from urllib.parse import quote

from lookalike.config import Settings
from lookalike.errors import ConfigError, LookalikeError

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")


class StorageUnavailable(LookalikeError):
    """The object store cannot be reached right now; retrying later may help."""

    code = "storage_unavailable"
    http_status = 503


class ObjectMissing(LookalikeError):
    code = "object_missing"
    http_status = 404


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/") or "//" in key:
        raise ValueError(f"bad object key {key!r}")
    return key


class ObjectStore(ABC):
    """Whole-object store with prefix listing and time-limited GET links."""

    name = ""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def delete(self, keys: list[str]) -> None: ...

    @abstractmethod
    def url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        """A GET link valid for ``ttl_s`` seconds (LocalStore: a path on the API, ``/v1/files/…``)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable when the store cannot be used."""

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        self.put(key, Path(path).read_bytes(), content_type or guess_type(key))

    def copy(self, src: str, dst: str) -> None:
        self.put(dst, self.get(src), guess_type(dst))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (which must end with ``/``); returns the count."""
        if not prefix.endswith("/"):
            raise ValueError("prefix must end with '/'")
        keys = self.list(prefix)
        if keys:
            self.delete(keys)
        return len(keys)


_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
          ".gif": "image/gif", ".mp4": "video/mp4", ".json": "application/json",
          ".npy": "application/octet-stream", ".npz": "application/octet-stream"}


def guess_type(key: str) -> str:
    return _TYPES.get(os.path.splitext(key)[1].lower(), "application/octet-stream")


# --- link signing (local files, shared results) ---------------------------------------------

def sign(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:20]).decode().rstrip("=")


def signed_query(secret: bytes, path: str, ttl_s: int, now: float | None = None) -> str:
    exp = int((now or time.time()) + ttl_s)
    return f"exp={exp}&sig={sign(secret, f'{path}|{exp}')}"


def verify_signed(secret: bytes, path: str, exp: str | int | None, sig: str | None,
                  now: float | None = None) -> bool:
    try:
        exp_i = int(exp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if not sig or exp_i < (now or time.time()):
        return False
    return hmac.compare_digest(sign(secret, f"{path}|{exp_i}"), sig)


# --- local folder -----------------------------------------------------------------------------

class LocalStore(ObjectStore):
    """A folder; ``url`` returns a signed API path that ``/v1/files/{key}`` serves."""

    name = "local"

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._secret = secret

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"no object {key}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith(".put-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            path = self.path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            while parent != self.root and parent.is_dir():  # drop folders left empty
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        path = f"/v1/files/{quote(check_key(key))}"
        return f"{path}?{signed_query(self._secret, key, ttl_s)}"

    def verify(self, key: str, exp: str | None, sig: str | None) -> bool:
        return verify_signed(self._secret, key, exp, sig)

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"the object folder {self.root} is not writable")


# --- S3 API -----------------------------------------------------------------------------------

class S3Store(ObjectStore):
    """Any S3 API through boto3; the bucket is created if missing."""

    name = "s3"

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, public_url: str | None = None,
                 region: str = "us-east-1", access_key: str | None = None,
                 secret_key: str | None = None, create_bucket: bool = True) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        session = boto3.session.Session(aws_access_key_id=access_key,
                                        aws_secret_access_key=secret_key, region_name=region)
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=5, read_timeout=30, max_pool_connections=32)
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)
        # Presigned links must name a host the client can reach, which may differ from ours.
        self._presigner = (session.client("s3", endpoint_url=public_url, config=config)
                           if public_url and public_url != endpoint_url else self.client)
        self._bucket_ready = False
        self._links: OrderedDict[tuple, tuple[float, str]] = OrderedDict()
        self._links_lock = threading.Lock()
        if create_bucket:
            self.ensure_bucket()

    def _errors(self, what: str):
        return _S3Errors(what)

    def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        from botocore.exceptions import ClientError

        with self._errors("check the bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status not in (404, 400) and exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                    raise
                try:
                    self.client.create_bucket(Bucket=self.bucket)
                except ClientError as exc2:
                    if exc2.response.get("Error", {}).get("Code") not in (
                            "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                log.info("created bucket %s", self.bucket)
        self._bucket_ready = True

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._errors(f"write {key}"):
            self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data,
                                   ContentType=content_type)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            with self._errors(f"read {key}"):
                return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissing(f"no object {key}") from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with self._errors(f"check {key}"):
                self.client.head_object(Bucket=self.bucket, Key=check_key(key))
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with self._errors(f"list {prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, keys: list[str]) -> None:
        with self._errors("delete objects"):
            for start in range(0, len(keys), 1000):
                chunk = keys[start:start + 1000]
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in chunk], "Quiet": True})

    def copy(self, src: str, dst: str) -> None:
        with self._errors(f"copy {src}"):
            self.client.copy_object(Bucket=self.bucket, Key=check_key(dst),
                                    CopySource={"Bucket": self.bucket, "Key": check_key(src)})

    #: how long a presigned link is handed out again: botocore takes ~0.4 ms to sign one and a
    #: polled job view holds ~10, so clients polling a job reuse links signed moments ago (a
    #: reused link still has at least ``ttl_s - LINK_REUSE_S`` seconds, or 90 % of ttl_s, left)
    LINK_REUSE_S = 60.0
    _LINKS_KEPT = 4096

    def url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        cache_key = (key, ttl_s, filename)
        now = time.monotonic()
        with self._links_lock:
            hit = self._links.get(cache_key)
            if hit is not None and now - hit[0] < min(self.LINK_REUSE_S, 0.1 * ttl_s):
                return hit[1]
        params = {"Bucket": self.bucket, "Key": check_key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'inline; filename="{filename}"'
        link = self._presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s)
        with self._links_lock:
            self._links[cache_key] = (now, link)
            self._links.move_to_end(cache_key)
            while len(self._links) > self._LINKS_KEPT:
                self._links.popitem(last=False)
        return link

    def ping(self) -> None:
        with self._errors("reach the bucket"):
            self.client.head_bucket(Bucket=self.bucket)


class _S3Errors:
    """Map connection-level boto faults to StorageUnavailable (retryable)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if status >= 500 or status == 429:
                raise StorageUnavailable(f"object store could not {self.what}: HTTP {status}") from None
            return False
        if isinstance(exc, (BotoCoreError, EndpointConnectionError, ConnectionError, TimeoutError)):
            raise StorageUnavailable(f"object store could not {self.what}: {type(exc).__name__}") from None
        return False


def open_store(settings: Settings, secret: bytes) -> ObjectStore:
    """The object store the settings name (S3 bucket created if missing)."""
    if settings.storage == "s3":
        if not settings.s3_bucket:
            raise ConfigError("LOOKALIKE_S3_BUCKET must name a bucket")
        return S3Store(settings.s3_bucket, endpoint_url=settings.s3_endpoint_url,
                       public_url=settings.s3_public_url, region=settings.s3_region,
                       access_key=settings.s3_access_key,
                       secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None)
    return LocalStore(settings.resolved_storage_dir, secret)
