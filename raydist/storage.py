"""One filesystem helper for local paths and ``s3://`` URIs.

Endpoint, region and credentials come from the standard AWS environment variables
(``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE`` ...) or from
``storage_options``: passed explicitly, or set for the whole process by :func:`use_options` (the
CLI's ``--storage-options``, forwarded by the Ray executor to its actors and tasks). They are
handed to fsspec / s3fs only: nothing here logs or returns them.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import fsspec


def transient_errors() -> tuple[type[BaseException], ...]:
    """Storage errors worth retrying a whole Ray task for, once botocore's own retries are spent:
    the endpoint unreachable, a dropped connection, a timeout. Permanent errors (a missing bucket
    or key, a refused credential: FileNotFoundError, PermissionError) are not among them, so they
    fail at once with their message."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from botocore import exceptions as be

        errors += [be.EndpointConnectionError, be.ConnectionClosedError, be.ReadTimeoutError, be.ConnectTimeoutError]
    except ImportError:  # no S3 support installed: nothing S3-specific can be raised either
        pass
    try:
        import aiohttp

        errors.append(aiohttp.ClientConnectionError)
    except ImportError:
        pass
    return tuple(errors)


_PROCESS_OPTIONS: dict[str, Any] = {}  # --storage-options: under every call's explicit options


def use_options(storage_options: dict[str, Any] | None) -> None:
    """Set the storage options every filesystem of this process starts from (explicit options given
    to a call win key by key), e.g. ``{"profile": "archive"}`` for a non-default S3 profile."""
    _PROCESS_OPTIONS.clear()
    _PROCESS_OPTIONS.update(storage_options or {})


def process_options() -> dict[str, Any]:
    """A copy of what :func:`use_options` set (for the Ray executor to forward to its workers)."""
    return dict(_PROCESS_OPTIONS)


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _s3_options(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    opts = dict(storage_options or {})
    endpoint = opts.pop("endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    client_kwargs = dict(opts.pop("client_kwargs", {}) or {})
    if endpoint:
        client_kwargs.setdefault("endpoint_url", endpoint)
    region = opts.pop("region", None) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs.setdefault("region_name", region)
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    # Fresh instances: a cached client would outlive a restarted endpoint or changed credentials.
    opts.setdefault("skip_instance_cache", True)
    # An endpoint that restarts or throttles: botocore's standard retry mode backs off exponentially
    # (with jitter) over up to 10 attempts, riding out outages of tens of seconds.
    config_kwargs = dict(opts.pop("config_kwargs", {}) or {})
    config_kwargs.setdefault("retries", {"max_attempts": 10, "mode": "standard"})
    config_kwargs.setdefault("connect_timeout", 5)
    config_kwargs.setdefault("read_timeout", 30)
    opts["config_kwargs"] = config_kwargs
    return opts


def filesystem(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(fs, path)`` for ``uri``; ``path`` is what ``fs`` and pyarrow.dataset expect."""
    storage_options = {**_PROCESS_OPTIONS, **(storage_options or {})}
    if uri.startswith("s3://"):
        import s3fs

        return s3fs.S3FileSystem(**_s3_options(storage_options)), uri[len("s3://") :].rstrip("/")
    if is_remote(uri):
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        return fs, path
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return fsspec.filesystem("file"), os.path.abspath(path)


def join(uri: str, *parts: str) -> str:
    if is_remote(uri):
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def read_bytes(uri: str, storage_options: dict[str, Any] | None = None) -> bytes:
    fs, path = filesystem(uri, storage_options)
    with fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write atomically: a temporary sibling is written first and then moved into place, so a
    reader never sees a half-written file under the final name. The temporary name starts with
    ``.``: dataset readers (pyarrow's and ours) skip such names, so a crash between write and
    move leaves nothing that reads as results. (On S3 one PUT is already atomic.)"""
    fs, path = filesystem(uri, storage_options)
    paths = posixpath if is_remote(uri) else os.path
    parent, base = paths.split(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = paths.join(parent, f".{base}.tmp-{uuid.uuid4().hex[:8]}")
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)


def exists(uri: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = filesystem(uri, storage_options)
    return fs.exists(path)

