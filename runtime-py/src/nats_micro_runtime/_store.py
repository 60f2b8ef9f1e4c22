"""Persistence in JetStream (PROTOCOL §12.2–§12.4): the buckets a method
declares, the typed key-value and object store handles of clients, and the
write a service makes after a successful handler.

nats-py 2.16's ``KeyValueConfig`` and ``ObjectStoreConfig`` know neither
compression nor metadata, its ``put`` and ``update`` take no per-message TTL
and its reads do not recognise the markers nats-server 2.11+ leaves when a
key expires: the buckets are therefore created from full stream
configurations (as nats.go's ``CreateOrUpdateKeyValue`` builds them) and
writes are JetStream publishes with the key-value headers, so that every
option of the proto reaches the server.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, cast

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from ._codec import decode_message, encode_message
from ._codes import (
    ABORTED,
    ALREADY_EXISTS,
    DATA_LOSS,
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
)
from ._errors import ErrorTable, NatsMicroError
from ._keys import KeyTemplate, is_valid_key
from ._typevars import RequestT, ResponseT

KV_REVISION_HEADER = "Nats-Micro-KV-Revision"
"""Request: the revision a compare-and-set write expects (``0``: no value);
reply: the revision written (PROTOCOL §12.2)."""

_KV_OPERATION = "KV-Operation"
_MARKER_REASON = "Nats-Marker-Reason"
_EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
_TTL = "Nats-TTL"
_ROLLUP = "Nats-Rollup"
_WRONG_LAST_SEQUENCE = (10071, 10164)
"""JetStream error codes of an expected-last-subject-sequence mismatch."""
_DUPLICATE_WINDOW = 120.0


class KvWriteMode(enum.Enum):
    """How a service writes a response to its key (PROTOCOL §12.2)."""

    LAST_WRITE_WINS = "LAST_WRITE_WINS"
    """Put: the newest write wins."""
    COMPARE_AND_SET = "COMPARE_AND_SET"
    """Update at the expected revision; a conflict is ``ABORTED``."""
    CREATE_ONLY = "CREATE_ONLY"
    """Create; a key that holds a value is ``ALREADY_EXISTS``."""


class PersistFailurePolicy(enum.Enum):
    """What a failed write does to the call (PROTOCOL §12.2)."""

    BEST_EFFORT = "BEST_EFFORT"
    """The reply stands; the failure is logged (``persist_failed``) and counted."""
    REQUIRED = "REQUIRED"
    """The caller gets the error instead of the reply."""


@dataclass(frozen=True)
class KvBucketSpec:
    """A key-value bucket with the settings it is created or updated with."""

    name: str
    description: str = ""
    history: int = 1
    """Revisions kept per key (1 to 64)."""
    ttl: float | None = None
    """Seconds an entry lives (the stream's max age)."""
    compression: bool = False
    """S2 compression of the bucket's stream."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    limit_marker_ttl: float | None = None
    """Seconds the markers left by expired or purged keys live; enables per-key TTLs."""


@dataclass(frozen=True)
class KvStoreSpec:
    """A method's ``(natsmicro.kv_store)``, as generated code declares it."""

    bucket: KvBucketSpec
    key: KeyTemplate
    key_ttl: float | None = None
    """Seconds each written key lives (``Nats-TTL``)."""
    purge_ttl: float | None = None
    """Seconds the marker of a purge lives."""
    client_only: bool = False
    """Only client helpers: the service never writes."""
    write_mode: KvWriteMode = KvWriteMode.LAST_WRITE_WINS
    failure_policy: PersistFailurePolicy = PersistFailurePolicy.BEST_EFFORT


@dataclass(frozen=True)
class ObjectBucketSpec:
    """An object store bucket with the settings it is created or updated with."""

    name: str
    description: str = ""
    ttl: float | None = None
    compression: bool = False


@dataclass(frozen=True)
class ObjectStoreSpec:
    """A method's ``(natsmicro.object_store)``, as generated code declares it."""

    bucket: ObjectBucketSpec
    key: KeyTemplate
    client_only: bool = False


# Errors ----------------------------------------------------------------------


class _Failure(Exception):
    """A store failure, as a code and a message, before it becomes the error
    class of whoever reports it (the client's or the runtime's)."""

    def __init__(self, code: str, message: str, error: NatsMicroError | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error = error
        """The runtime error it comes from, when there is one (a key that cannot be rendered)."""


def _failure(err: BaseException, what: str, bucket: str, conflict: str | None = None) -> _Failure:
    """A JetStream failure as the code PROTOCOL §12.2/§12.4 gives it."""
    if isinstance(err, _Failure):
        return err
    if isinstance(err, NatsMicroError):
        return _Failure(err.code, err.message)
    if isinstance(err, (nats.js.errors.ServiceUnavailableError, nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError)):
        return _Failure(
            FAILED_PRECONDITION,
            f"{what}: JetStream did not answer for bucket {bucket} (is JetStream enabled on the server and the account?)",
        )
    if isinstance(err, nats.errors.TimeoutError):
        return _Failure(UNAVAILABLE, f"{what}: JetStream did not answer in time for bucket {bucket}")
    if isinstance(err, nats.errors.MaxPayloadError):
        return _Failure(RESOURCE_EXHAUSTED, f"{what}: the value exceeds the server's max_payload")
    if isinstance(err, nats.js.errors.APIError):
        description = err.description or ""
        if err.err_code in _WRONG_LAST_SEQUENCE and conflict is not None:
            return _Failure(conflict, f"{what}: {description}")
        if err.err_code == 10059 or err.code == 404:
            return _Failure(NOT_FOUND, f"{what}: bucket {bucket} does not exist")
        if err.code == 503:
            return _Failure(FAILED_PRECONDITION, f"{what}: JetStream is not available for bucket {bucket}: {description}")
        if any(word in description.lower() for word in ("maximum", "exceed", "insufficient", "limit")):
            return _Failure(RESOURCE_EXHAUSTED, f"{what}: {description}")
        return _Failure(INTERNAL, f"{what}: JetStream error {err.err_code}: {description}")
    if isinstance(err, (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError, nats.errors.StaleConnectionError)):
        return _Failure(UNAVAILABLE, f"{what}: the NATS connection is closed")
    return _Failure(INTERNAL, f"{what}: {type(err).__name__}: {err}")


def _ttl_header(seconds: float) -> str:
    """A TTL as ``Nats-TTL`` takes it (a Go duration; the server keeps whole seconds)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{math.ceil(seconds * 1000)}ms"


# Buckets ---------------------------------------------------------------------


def kv_stream_config(bucket: KvBucketSpec) -> api.StreamConfig:
    """The stream of a key-value bucket, as nats.go's ``CreateOrUpdateKeyValue`` configures it."""
    duplicate_window = min(_DUPLICATE_WINDOW, bucket.ttl) if bucket.ttl else _DUPLICATE_WINDOW
    markers = bucket.limit_marker_ttl if bucket.limit_marker_ttl else None
    return api.StreamConfig(
        name=f"KV_{bucket.name}",
        description=bucket.description or None,
        subjects=[f"$KV.{bucket.name}.>"],
        max_msgs_per_subject=bucket.history,
        max_bytes=-1,
        max_age=bucket.ttl or 0,
        max_msg_size=-1,
        max_msgs=-1,
        max_consumers=-1,
        storage=api.StorageType.FILE,
        num_replicas=1,
        allow_rollup_hdrs=True,
        deny_delete=True,
        duplicate_window=duplicate_window,
        allow_direct=True,
        compression=api.StoreCompression.S2 if bucket.compression else api.StoreCompression.NONE,
        discard=api.DiscardPolicy.NEW,
        metadata=dict(bucket.metadata) or None,
        subject_delete_marker_ttl=markers,
        allow_msg_ttl=True if markers else None,
    )


def object_stream_config(bucket: ObjectBucketSpec) -> api.StreamConfig:
    """The stream of an object store, as nats.go's ``CreateOrUpdateObjectStore`` configures it."""
    return api.StreamConfig(
        name=f"OBJ_{bucket.name}",
        description=bucket.description or None,
        subjects=[f"$O.{bucket.name}.C.>", f"$O.{bucket.name}.M.>"],
        max_age=bucket.ttl or 0,
        max_bytes=-1,
        storage=api.StorageType.FILE,
        num_replicas=1,
        discard=api.DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
        compression=api.StoreCompression.S2 if bucket.compression else api.StoreCompression.NONE,
    )


async def _create_or_update(js: JetStreamContext, config: api.StreamConfig, what: str, bucket: str) -> api.StreamInfo:
    """Creates the stream, or updates it to ``config`` when it exists; a
    stream that already allows per-message TTLs keeps them (the server
    cannot take them back). Fails with ``FAILED_PRECONDITION`` naming
    JetStream when JetStream does not answer."""
    try:
        assert config.name is not None
        try:
            existing = await js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            try:
                return await js.add_stream(config)
            except nats.js.errors.BadRequestError as err:
                if err.err_code != 10058:  # created meanwhile by another instance: update it
                    raise
                existing = await js.stream_info(config.name)
        if existing.config.allow_msg_ttl:
            config.allow_msg_ttl = True
        return await js.update_stream(config)
    except Exception as err:
        raise _failure(err, what, bucket) from err


async def ensure_kv_bucket(js: JetStreamContext, bucket: KvBucketSpec) -> None:
    """Creates the key-value bucket with the proto's settings, or updates it to them (PROTOCOL §12.2).

    Raises :class:`_Failure` (``FAILED_PRECONDITION`` naming JetStream and the bucket when
    JetStream does not answer, ``UNAVAILABLE`` on a timeout)."""
    await _create_or_update(js, kv_stream_config(bucket), f"creating key-value bucket {bucket.name}", bucket.name)


async def ensure_object_bucket(js: JetStreamContext, bucket: ObjectBucketSpec) -> None:
    """Creates the object store with the proto's settings, or updates it to them (PROTOCOL §12.3)."""
    await _create_or_update(js, object_stream_config(bucket), f"creating object store {bucket.name}", bucket.name)


@dataclass(frozen=True)
class _Latest:
    """The newest message of a key: its revision, and its value unless it is a delete, purge or expiry marker."""

    revision: int
    value: bytes | None
    created: datetime | None


class _KvBucket:
    """A key-value bucket over JetStream, in bytes: what the typed handle and
    the service's writes share."""

    def __init__(self, js: JetStreamContext, name: str, direct: bool, key_ttl: float | None) -> None:
        self.js = js
        self.name = name
        self.stream = f"KV_{name}"
        self.direct = direct
        self.key_ttl = key_ttl

    @classmethod
    async def bind(cls, js: JetStreamContext, spec: KvStoreSpec, create: bool) -> _KvBucket:
        """The bucket as it exists (``NOT_FOUND`` when it does not), or, with
        ``create``, created with the proto's settings when missing."""
        what = f"opening key-value bucket {spec.bucket.name}"
        try:
            try:
                info = await js.stream_info(f"KV_{spec.bucket.name}")
            except nats.js.errors.NotFoundError:
                if not create:
                    raise
                info = await _create_or_update(js, kv_stream_config(spec.bucket), what, spec.bucket.name)
        except Exception as err:
            raise _failure(err, what, spec.bucket.name) from err
        return cls(js, spec.bucket.name, bool(info.config.allow_direct), spec.key_ttl)

    def subject(self, key: str) -> str:
        return f"$KV.{self.name}.{key}"

    async def latest(self, key: str, revision: int | None = None) -> _Latest | None:
        """The key's newest message (or the one at ``revision``); ``None`` when it has none."""
        try:
            if revision is not None:
                msg = await self.js.get_msg(self.stream, seq=revision, direct=self.direct)
                if msg.subject != self.subject(key):
                    return None
            else:
                msg = await self.js.get_msg(self.stream, subject=self.subject(key), direct=self.direct)
        except nats.js.errors.NotFoundError as err:
            if err.err_code == 10059:  # the stream, not the message: the bucket is gone
                raise
            return None
        headers = msg.headers or {}
        deleted = headers.get(_KV_OPERATION) in ("DEL", "PURGE") or _MARKER_REASON in headers
        assert msg.seq is not None
        return _Latest(msg.seq, None if deleted else (msg.data or b""), msg.time)

    async def revision(self, key: str) -> int:
        """The revision of the key's value; ``0`` when it holds none (absent, deleted, purged or expired)."""
        latest = await self.latest(key)
        return latest.revision if latest is not None and latest.value is not None else 0

    async def publish(self, key: str, value: bytes, headers: dict[str, str]) -> int:
        if self.key_ttl:
            headers[_TTL] = _ttl_header(self.key_ttl)
        ack = await self.js.publish(self.subject(key), value, headers=headers or None)
        return ack.seq

    async def put(self, key: str, value: bytes) -> int:
        return await self.publish(key, value, {})

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Writes at ``revision`` (``0``: the key must hold no value)."""
        if revision == 0:
            return await self.create(key, value)
        return await self.publish(key, value, {_EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)})

    async def create(self, key: str, value: bytes) -> int:
        """Writes if the key holds no value: absent, or its newest message a
        delete, purge or expiry marker (whose revision is then expected)."""
        try:
            return await self.publish(key, value, {_EXPECTED_LAST_SUBJECT_SEQUENCE: "0"})
        except nats.js.errors.APIError as err:
            if err.err_code not in _WRONG_LAST_SEQUENCE:
                raise
            latest = await self.latest(key)
            if latest is None or latest.value is not None:
                raise
            return await self.publish(key, value, {_EXPECTED_LAST_SUBJECT_SEQUENCE: str(latest.revision)})

    async def delete(self, key: str, revision: int | None) -> None:
        headers = {_KV_OPERATION: "DEL"}
        if revision:
            headers[_EXPECTED_LAST_SUBJECT_SEQUENCE] = str(revision)
        await self.js.publish(self.subject(key), b"", headers=headers)

    async def purge(self, key: str, ttl: float | None) -> None:
        headers = {_KV_OPERATION: "PURGE", _ROLLUP: "sub"}
        if ttl:
            headers[_TTL] = _ttl_header(ttl)
        await self.js.publish(self.subject(key), b"", headers=headers)

    def key_value(self) -> KeyValue:
        """nats-py's view of the bucket, for its watchers."""
        return KeyValue(name=self.name, stream=self.stream, pre=f"$KV.{self.name}.", js=self.js, direct=self.direct)


# Typed key-value handle ------------------------------------------------------


class KvOperation(enum.Enum):
    """What a change of a key did."""

    PUT = "PUT"
    DELETE = "DELETE"
    PURGE = "PURGE"


@dataclass(frozen=True)
class KvEntry(Generic[ResponseT]):
    """A key's value with its revision and the time it was written."""

    key: str
    value: ResponseT
    revision: int
    created: datetime | None


@dataclass(frozen=True)
class KvChange(Generic[ResponseT]):
    """One change of a watched key: a put (with its value) or a delete or purge (``value`` is ``None``)."""

    key: str
    operation: KvOperation
    revision: int
    created: datetime | None
    value: ResponseT | None


class _TypedHandle(Generic[RequestT, ResponseT]):
    """What the KV and object store handles share: the method they belong
    to, its response type and encoding, and its error classes."""

    def __init__(self, method: str, response_type: type[ResponseT], use_json: bool, errors: ErrorTable) -> None:
        self._method = method
        self._response_type = response_type
        self._use_json = use_json
        self._errors = errors

    def _error(self, failure: _Failure) -> NatsMicroError:
        return self._errors.error(failure.code, self._method, failure.message, b"", {})

    def _decode(self, value: bytes, what: str) -> ResponseT:
        """``value`` as the method's response; ``DATA_LOSS`` naming ``what`` when it does not decode."""
        try:
            return decode_message(value, self._response_type, self._use_json)
        except ValueError as err:
            raise self._error(_Failure(DATA_LOSS, f"{what} does not decode: {err}")) from err

    def _encode(self, value: ResponseT) -> bytes:
        return encode_message(value, self._use_json)


class KvHandle(_TypedHandle[RequestT, ResponseT]):
    """A typed handle on the key-value bucket of a method with ``kv_store``
    (PROTOCOL §12.4): values are the method's response, encoded as the
    service encodes its replies. Open one from the generated client::

        kv = await client.save_profile_kv()
        revision = await kv.put("user.ada", Profile(id="ada"))
        entry = await kv.get(kv.key(Profile(id="ada")))   # KvEntry or None
        if entry is not None:
            await kv.update(entry.key, Profile(id="ada", name="Ada"), entry.revision)

    A key is a string, rendered from a request with :meth:`key` exactly as
    the service renders it, or from the template's parts with
    :meth:`key_from`. Failures raise the service's error classes:
    ``NOT_FOUND`` (no bucket), ``FAILED_PRECONDITION`` (JetStream does not
    answer), ``UNAVAILABLE`` (timeout), ``ALREADY_EXISTS`` (create),
    ``ABORTED`` (stale revision), ``DATA_LOSS`` (a value that does not
    decode), ``INVALID_ARGUMENT`` (a key that is not valid)."""

    def __init__(
        self,
        bucket: _KvBucket,
        spec: KvStoreSpec,
        method: str,
        response_type: type[ResponseT],
        use_json: bool,
        errors: ErrorTable,
    ) -> None:
        super().__init__(method, response_type, use_json, errors)
        self._bucket = bucket
        self._spec = spec

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket.name

    @property
    def template(self) -> KeyTemplate:
        """The method's key template."""
        return self._spec.key

    def key(self, request: RequestT) -> str:
        """The key the service writes ``request``'s response under (``INVALID_ARGUMENT`` when it has none)."""
        return self._spec.key.render(request, kv=True, method=self._method)

    def key_from(self, parts: Mapping[str, object]) -> str:
        """The key from every placeholder's value (``{"tenant.id": 7, ...}``)."""
        return self._spec.key.render_parts(parts, kv=True, method=self._method)

    def _check_key(self, key: str) -> str:
        if not is_valid_key(key):
            raise self._error(_Failure(INVALID_ARGUMENT, f"{key!r} is not a valid key"))
        return key

    def _decode_value(self, key: str, revision: int, value: bytes) -> ResponseT:
        return self._decode(value, f"the value of {key} at revision {revision} in bucket {self.bucket}")

    async def _run(self, what: str, work: Any, conflict: str | None = None) -> Any:
        try:
            return await work
        except NatsMicroError:
            raise
        except Exception as err:
            raise self._error(_failure(err, what, self.bucket, conflict)) from err

    async def get(self, key: str, *, revision: int | None = None) -> KvEntry[ResponseT] | None:
        """The key's value (or its value at ``revision``), or ``None`` when it holds none."""
        key = self._check_key(key)
        latest: _Latest | None = await self._run(f"reading {key}", self._bucket.latest(key, revision))
        if latest is None or latest.value is None:
            return None
        return KvEntry(key, self._decode_value(key, latest.revision, latest.value), latest.revision, latest.created)

    async def put(self, key: str, value: ResponseT) -> int:
        """Writes ``value``; returns the revision."""
        key = self._check_key(key)
        revision: int = await self._run(f"putting {key}", self._bucket.put(key, self._encode(value)))
        return revision

    async def create(self, key: str, value: ResponseT) -> int:
        """Writes ``value`` if the key holds none (``ALREADY_EXISTS`` otherwise); returns the revision."""
        key = self._check_key(key)
        revision: int = await self._run(f"creating {key}", self._bucket.create(key, self._encode(value)), ALREADY_EXISTS)
        return revision

    async def update(self, key: str, value: ResponseT, revision: int) -> int:
        """Writes ``value`` if the key is at ``revision`` (``0``: holds no value), else ``ABORTED``; returns the new revision."""
        key = self._check_key(key)
        written: int = await self._run(f"updating {key}", self._bucket.update(key, self._encode(value), revision), ABORTED)
        return written

    async def delete(self, key: str, *, revision: int | None = None) -> None:
        """Deletes the key (a delete marker; its history stays), at ``revision`` if given (``ABORTED`` otherwise)."""
        key = self._check_key(key)
        await self._run(f"deleting {key}", self._bucket.delete(key, revision), ABORTED)

    async def purge(self, key: str) -> None:
        """Removes the key and its history, leaving a marker that lives ``purge_ttl``."""
        key = self._check_key(key)
        await self._run(f"purging {key}", self._bucket.purge(key, self._spec.purge_ttl))

    async def history(self, key: str) -> list[KvChange[ResponseT]]:
        """Every revision the bucket keeps of the key, oldest first."""
        key = self._check_key(key)
        changes: list[KvChange[ResponseT]] = []
        async with self._watch(key, history=True, until_current=True) as watch:
            async for change in watch:
                changes.append(change)
        return changes

    def watch(self, key: str) -> KvWatch[ResponseT]:
        """The key's changes as they happen, starting with its current value
        if it has one: ``async with kv.watch(key) as changes: async for change in changes``."""
        return self._watch(self._check_key(key), history=False, until_current=False)

    def _watch(self, key: str, *, history: bool, until_current: bool) -> KvWatch[ResponseT]:
        return KvWatch(self, self._bucket, key, history, until_current)

    async def keys(self, parts: Mapping[str, object] | None = None) -> list[str]:
        """The keys holding a value that match the template with the given
        ``parts`` (by placeholder) and anything for the others."""
        parts = dict(parts or {})
        subject_filter = self._spec.key.filter(parts, method=self._method)
        found: list[str] = []
        async with KvWatch(self, self._bucket, subject_filter, False, True, keys_only=True) as watch:
            async for change in watch:
                if change.operation is KvOperation.PUT and self._spec.key.matches(change.key, parts):
                    found.append(change.key)
        return found


class KvWatch(Generic[ResponseT]):
    """The changes of a key (:meth:`KvHandle.watch`): an async iterator of
    :class:`KvChange`; use it as an async context manager to stop watching."""

    def __init__(
        self,
        handle: KvHandle[Any, ResponseT],
        bucket: _KvBucket,
        key: str,
        history: bool,
        until_current: bool,
        *,
        keys_only: bool = False,
    ) -> None:
        self._handle = handle
        self._bucket = bucket
        self._key = key
        self._history = history
        self._until_current = until_current
        self._keys_only = keys_only
        self._watcher: Any = None
        self._done = False

    async def _start(self) -> None:
        if self._watcher is None:
            kv = self._bucket.key_value()
            self._watcher = await self._handle._run(
                f"watching {self._key}",
                kv.watch(self._key, include_history=self._history, meta_only=self._keys_only),
            )

    async def __aenter__(self) -> KvWatch[ResponseT]:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __aiter__(self) -> AsyncIterator[KvChange[ResponseT]]:
        return self

    async def __anext__(self) -> KvChange[ResponseT]:
        await self._start()
        while not self._done:
            try:
                entry = await self._watcher.__anext__()
            except StopAsyncIteration:  # stopped
                break
            if entry is None:  # nats-py's marker: everything current was delivered
                if self._until_current:
                    await self.stop()
                    break
                continue
            revision = int(entry.revision or 0)
            operation = {"DEL": KvOperation.DELETE, "PURGE": KvOperation.PURGE}.get(entry.operation or "", KvOperation.PUT)
            value = None
            if operation is KvOperation.PUT and not self._keys_only:
                value = self._handle._decode_value(entry.key, revision, entry.value or b"")
            created = cast(datetime | None, entry.created)
            return KvChange(entry.key, operation, revision, created, value)
        raise StopAsyncIteration

    async def stop(self) -> None:
        """Stops watching."""
        if self._done:
            return
        self._done = True
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except nats.errors.Error:
                pass


# Typed object store handle ---------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """An object's name, size, SHA-256 digest (``SHA-256=<base64url>``) and modification time."""

    name: str
    size: int
    digest: str
    modified: datetime | None


def _object_info(info: api.ObjectInfo) -> ObjectInfo:
    modified = None
    if info.mtime:
        try:
            modified = datetime.fromisoformat(info.mtime.replace("Z", "+00:00"))
        except ValueError:
            modified = None
    return ObjectInfo(info.name, int(info.size or 0), info.digest or "", modified)


def _object_digest(digest: str) -> bytes | None:
    """The SHA-256 in an object's ``digest`` (``SHA-256=`` + base64url, padded or not), or ``None``."""
    prefix = "sha-256="
    if not digest.lower().startswith(prefix):
        return None
    text = digest[len(prefix) :]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


class ObjectHandle(_TypedHandle[RequestT, ResponseT]):
    """A typed handle on the object store of a method with ``object_store``
    (PROTOCOL §12.4): objects are the method's response, encoded as the
    service encodes its replies, read back with their SHA-256 digest
    verified (``DATA_LOSS`` on a mismatch)::

        reports = await client.generate_report_objects()
        report = await reports.get(reports.name(ReportRequest(id="r1")))  # or None

    Failures raise the service's error classes as :class:`KvHandle` does."""

    def __init__(
        self,
        store: ObjectStore,
        js: JetStreamContext,
        spec: ObjectStoreSpec,
        method: str,
        response_type: type[ResponseT],
        use_json: bool,
        errors: ErrorTable,
    ) -> None:
        super().__init__(method, response_type, use_json, errors)
        self._store = store
        self._js = js
        self._spec = spec

    @classmethod
    async def _open(cls, js: JetStreamContext, spec: ObjectStoreSpec, create: bool) -> ObjectStore:
        what = f"opening object store {spec.bucket.name}"
        try:
            try:
                await js.stream_info(f"OBJ_{spec.bucket.name}")
            except nats.js.errors.NotFoundError:
                if not create:
                    raise
                await _create_or_update(js, object_stream_config(spec.bucket), what, spec.bucket.name)
        except Exception as err:
            raise _failure(err, what, spec.bucket.name) from err
        return ObjectStore(name=spec.bucket.name, stream=f"OBJ_{spec.bucket.name}", js=js)

    @property
    def bucket(self) -> str:
        """The object store's name."""
        return self._spec.bucket.name

    def name(self, request: RequestT) -> str:
        """The name the service stores ``request``'s response under."""
        return self._spec.key.render(request, kv=False, method=self._method)

    def name_from(self, parts: Mapping[str, object]) -> str:
        """The name from every placeholder's value."""
        return self._spec.key.render_parts(parts, kv=False, method=self._method)

    async def info(self, name: str) -> ObjectInfo | None:
        """The object's size, digest and time, or ``None`` when there is none."""
        try:
            return _object_info(await self._store.get_info(name))
        except nats.js.errors.ObjectNotFoundError:
            return None
        except Exception as err:
            raise self._error(_failure(err, f"reading object {name!r}", self.bucket)) from err

    async def get(self, name: str) -> ResponseT | None:
        """The object, its size and digest verified (``DATA_LOSS`` otherwise), or ``None`` when there is none."""
        data = await self.get_bytes(name)
        if data is None:
            return None
        return self._decode(data, f"object {name!r} in {self.bucket}")

    async def get_bytes(self, name: str) -> bytes | None:
        """The object's bytes, size and digest verified, or ``None`` when there is none."""
        what = f"reading object {name!r}"
        try:
            info = await self._store.get_info(name)
        except nats.js.errors.ObjectNotFoundError:
            return None
        except Exception as err:
            raise self._error(_failure(err, what, self.bucket)) from err
        expected = _object_digest(info.digest or "")
        if expected is None:
            raise self._error(_Failure(DATA_LOSS, f"{what}: its digest {info.digest!r} is not a SHA-256"))
        size = int(info.size or 0)
        data = bytearray()
        digest = hashlib.sha256()
        if size > 0:
            if not info.nuid:
                raise self._error(_Failure(DATA_LOSS, f"{what}: its metadata names no chunks"))
            try:
                await self._read_chunks(f"$O.{self.bucket}.C.{info.nuid}", size, data, digest)
            except NatsMicroError:
                raise
            except Exception as err:
                raise self._error(_failure(err, what, self.bucket)) from err
        if len(data) != size:
            raise self._error(_Failure(DATA_LOSS, f"{what}: {len(data)} bytes stored, {size} expected"))
        if digest.digest() != expected:
            raise self._error(_Failure(DATA_LOSS, f"{what}: its SHA-256 digest does not match its contents"))
        return bytes(data)

    async def _read_chunks(self, subject: str, size: int, data: bytearray, digest: Any) -> None:
        """Reads the chunks until the last one (no more pending) or more than ``size`` bytes."""
        subscription = await self._js.subscribe(subject, ordered_consumer=True)
        try:
            while True:
                msg = await subscription.next_msg(timeout=self._js._timeout)
                data += msg.data
                digest.update(msg.data)
                if len(data) > size or msg.metadata.num_pending == 0:
                    return
        finally:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error:
                pass

    async def put(self, name: str, value: ResponseT) -> ObjectInfo:
        """Stores ``value`` under ``name`` (replacing any object of that name)."""
        return await self.put_bytes(name, self._encode(value))

    async def put_bytes(self, name: str, data: bytes) -> ObjectInfo:
        """Stores ``data`` under ``name``."""
        try:
            return _object_info(await self._store.put(name, data))
        except Exception as err:
            raise self._error(_failure(err, f"storing object {name!r}", self.bucket)) from err

    async def delete(self, name: str) -> None:
        """Deletes the object (nothing happens when there is none)."""
        try:
            await self._store.delete(name)
        except nats.js.errors.ObjectNotFoundError:
            return
        except Exception as err:
            raise self._error(_failure(err, f"deleting object {name!r}", self.bucket)) from err


async def open_kv(
    js: JetStreamContext,
    spec: KvStoreSpec,
    method: str,
    response_type: type[ResponseT],
    use_json: bool,
    errors: ErrorTable,
) -> KvHandle[Any, ResponseT]:
    """Binds a typed handle to a method's bucket (creating it for a ``client_only`` method)."""
    try:
        bucket = await _KvBucket.bind(js, spec, create=spec.client_only)
    except _Failure as failure:
        raise errors.error(failure.code, method, failure.message, b"", {}) from failure
    return KvHandle(bucket, spec, method, response_type, use_json, errors)


async def open_objects(
    js: JetStreamContext,
    spec: ObjectStoreSpec,
    method: str,
    response_type: type[ResponseT],
    use_json: bool,
    errors: ErrorTable,
) -> ObjectHandle[Any, ResponseT]:
    """Binds a typed handle to a method's object store (creating it for a ``client_only`` method)."""
    try:
        store = await ObjectHandle._open(js, spec, create=spec.client_only)
    except _Failure as failure:
        raise errors.error(failure.code, method, failure.message, b"", {}) from failure
    return ObjectHandle(store, js, spec, method, response_type, use_json, errors)


# The service's writes (PROTOCOL §12.2, §12.3) -----------------------------------


class _Writer:
    """What a service does around a persisting method's handler: the
    compare-and-set revision before it, the write after it."""

    bucket: str
    required: bool
    failures: int = 0

    async def before(self, request: Any, headers: Mapping[str, str], method: str) -> object:
        """Runs before the handler; what it returns is handed to :meth:`after`."""
        return None

    async def after(self, request: Any, body: bytes, state: object, method: str) -> tuple[int | None, _Failure | None, str]:
        """Writes ``body``: the revision written (KV), or the failure and the key."""
        raise NotImplementedError


class _KvWriter(_Writer):
    def __init__(self, bucket: _KvBucket, spec: KvStoreSpec) -> None:
        self._kv = bucket
        self._spec = spec
        self.bucket = spec.bucket.name
        self.required = spec.failure_policy is PersistFailurePolicy.REQUIRED

    async def before(self, request: Any, headers: Mapping[str, str], method: str) -> object:
        if self._spec.write_mode is not KvWriteMode.COMPARE_AND_SET:
            return None
        sent = headers.get(KV_REVISION_HEADER)
        if sent is not None:
            if not (sent.isascii() and sent.isdigit() and len(sent) <= 20 and int(sent) < 2**64):
                from ._errors import InvalidArgumentError

                raise InvalidArgumentError(method, f"{KV_REVISION_HEADER} {sent!r} is not a revision").with_field_violation(
                    KV_REVISION_HEADER, "must be a decimal revision (0: the key must hold no value)"
                )
            return int(sent)
        try:
            key = self._spec.key.render(request, kv=True, method=method)
        except NatsMicroError:
            return None  # the write reports it
        try:
            return await self._kv.revision(key)
        except Exception as err:
            return _failure(err, f"reading the revision of {key}", self.bucket)

    async def after(self, request: Any, body: bytes, state: object, method: str) -> tuple[int | None, _Failure | None, str]:
        try:
            key = self._spec.key.render(request, kv=True, method=method)
        except NatsMicroError as err:
            return None, _Failure(err.code, err.message, err), ""
        if isinstance(state, _Failure):
            return None, state, key
        mode = self._spec.write_mode
        try:
            if mode is KvWriteMode.CREATE_ONLY:
                return await self._kv.create(key, body), None, key
            if mode is KvWriteMode.COMPARE_AND_SET:
                return await self._kv.update(key, body, state if isinstance(state, int) else 0), None, key
            return await self._kv.put(key, body), None, key
        except Exception as err:
            conflict = {KvWriteMode.CREATE_ONLY: ALREADY_EXISTS, KvWriteMode.COMPARE_AND_SET: ABORTED}.get(mode)
            return None, _failure(err, f"writing {key} to bucket {self.bucket}", self.bucket, conflict), key


class _ObjectWriter(_Writer):
    def __init__(self, store: ObjectStore, spec: ObjectStoreSpec) -> None:
        self._store = store
        self._spec = spec
        self.bucket = spec.bucket.name
        self.required = False  # object stores have no failure policy: best effort (§12.3)

    async def after(self, request: Any, body: bytes, state: object, method: str) -> tuple[int | None, _Failure | None, str]:
        try:
            name = self._spec.key.render(request, kv=False, method=method)
        except NatsMicroError as err:
            return None, _Failure(err.code, err.message, err), ""
        try:
            await self._store.put(name, body)
        except Exception as err:
            return None, _failure(err, f"storing object {name!r} in {self.bucket}", self.bucket), name
        return None, None, name


async def open_writers(
    js: JetStreamContext, kv_store: KvStoreSpec | None, object_store: ObjectStoreSpec | None, ready: set[str]
) -> list[_Writer]:
    """The writes of one endpoint, its buckets created or updated to the
    proto's settings (each bucket once per registration: ``ready`` holds
    those done). Raises :class:`_Failure` (``FAILED_PRECONDITION`` naming
    JetStream and the bucket when JetStream does not answer)."""
    writers: list[_Writer] = []
    if kv_store is not None and not kv_store.client_only:
        if f"kv:{kv_store.bucket.name}" not in ready:
            await ensure_kv_bucket(js, kv_store.bucket)
            ready.add(f"kv:{kv_store.bucket.name}")
        writers.append(_KvWriter(_KvBucket(js, kv_store.bucket.name, True, kv_store.key_ttl), kv_store))
    if object_store is not None and not object_store.client_only:
        if f"obj:{object_store.bucket.name}" not in ready:
            await ensure_object_bucket(js, object_store.bucket)
            ready.add(f"obj:{object_store.bucket.name}")
        store = ObjectStore(name=object_store.bucket.name, stream=f"OBJ_{object_store.bucket.name}", js=js)
        writers.append(_ObjectWriter(store, object_store))
    return writers
