"""A client of the OCI distribution API (v2): manifests and blobs, read-only.

One ``RegistryClient`` talks to one registry over one ``httpx.Client``
(shared by the threads that download layers).  It speaks HTTPS with the
system's CAs plus the registry's directory under ``/etc/containers/certs.d``
or ``/etc/docker/certs.d`` (or ``cert_dir``); plain HTTP only for a registry
on this machine or when ``insecure`` (podman's ``--tls-verify=false``).

Everything the registry sends is checked: a manifest against the digest it
was asked by (or ``Docker-Content-Digest`` when asked by tag) and a size
limit; a blob against its descriptor's digest and size (``Store.commit``).
A blob download goes to the store's ingest file and resumes from its size
(an HTTP Range request) after an interruption, in this process or the next.

Connection errors, 429 and 5xx answers are retried ``retries`` times with
exponential backoff (a 429's ``Retry-After`` is honoured, up to
``max_wait``); every read, write and connect waits at most ``timeout``
seconds.  Errors are ``ImageError`` exceptions of one line naming what was asked and
what the registry said.
"""

from __future__ import annotations

import email.utils
import fcntl
import hashlib
import json
import os
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from ..errors import DigestError, ImageError
from .auth import Challenge, basic_header, find_credentials, parse_challenges
from .manifest import ACCEPT, Descriptor
from .reference import Reference
from .store import Store, check_digest

__all__ = ["RegistryClient", "Cancelled", "MAX_MANIFEST", "CERT_DIRS"]

#: The largest manifest or index read (containerd's limit too).
MAX_MANIFEST = 4 << 20
_MAX_TOKEN = 1 << 20
_MAX_ERROR_BODY = 64 << 10
#: Where a registry's CA certificates (``*.crt``) and client pairs (``*.cert``/``*.key``) are.
CERT_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
_CHUNK = 1 << 16


class _TLSFailure(ImageError):
    """The TLS handshake failed (a refused certificate, or a server that speaks plain HTTP)."""


class _ResumedBadly(Exception):
    """A resumed download did not match its digest: its first part was wrong."""


class Cancelled(Exception):
    """A download was stopped because ``cancel`` was set (another part of the pull failed)."""


def _ssl_context(registry: str, cert_dir: str | os.PathLike[str] | None,
                 insecure: bool) -> ssl.SSLContext:
    """``ssl.create_default_context()`` with the registry's certificates, but without the
    system's CAs yet: ``_SystemCAs`` loads them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)     # CERT_REQUIRED, check_hostname
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        ctx.keylog_filename = keylog
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    dirs = [Path(cert_dir)] if cert_dir is not None else [Path(d) / registry for d in CERT_DIRS]
    if cert_dir is not None and not Path(cert_dir).is_dir():
        raise ImageError(f"cert_dir: {str(cert_dir)!r} is not a directory")
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            try:
                if p.suffix == ".crt":
                    ctx.load_verify_locations(cafile=str(p))
                elif p.suffix == ".cert":
                    key = p.with_suffix(".key")
                    if not key.exists():
                        raise ImageError(f"client certificate {str(p)!r} has no key {str(key)!r}")
                    ctx.load_cert_chain(str(p), str(key))
            except (ssl.SSLError, OSError) as e:
                raise ImageError(f"certificate {str(p)!r}: {e}") from None
    return ctx


class _SystemCAs:
    """The system's CA certificates, loaded into ``ctx`` in a thread of their own: parsing
    the bundle takes some 20 ms (the GIL released), which overlap with the setting up of
    the HTTP client.  ``wait()`` before the first connection."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, args=(ctx,), name="isolate-cas",
                                        daemon=True)
        self._thread.start()

    def _load(self, ctx: ssl.SSLContext) -> None:
        try:
            ctx.load_default_certs()
        except BaseException as e:      # raised by wait(), in the caller's thread
            self._error = e

    def join(self) -> None:
        self._thread.join()

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise ImageError(f"the system's CA certificates: {self._error}")


def _registry_message(resp: httpx.Response) -> str:
    """What the registry said: its first error's message (and code), else the status's reason."""
    try:
        body = resp.read()[:_MAX_ERROR_BODY]
        doc = json.loads(body)
        err = doc["errors"][0]
        code, msg = str(err.get("code", "")), str(err.get("message", ""))
        text = msg or code.lower().replace("_", " ")
        if code and msg and code.lower().replace("_", " ") != msg.lower():
            text = f"{msg} ({code})"
        return text[:300]
    except Exception:  # any body (HTML, nothing, truncated) falls back to the status line
        return f"{resp.status_code} {resp.reason_phrase}".strip()


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when is not None else None


class RegistryClient:
    """The v2 API of one ``registry`` (``host[:port]`` as in a ``Reference``).

    ``local``: the registry is on this machine (plain HTTP allowed; default
    from the name).  ``credentials`` (user, password) are used as given; else
    they are looked up in ``auth_file`` and the usual files (see
    ``isolate.images.auth``).  Close it (or use ``with``) to drop connections.
    """

    def __init__(self, registry: str, *, insecure: bool = False,
                 cert_dir: str | os.PathLike[str] | None = None,
                 credentials: tuple[str, str] | None = None,
                 auth_file: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, retries: int = 4, backoff: float = 0.5,
                 max_wait: float = 30.0, local: bool | None = None) -> None:
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ImageError(f"timeout: {timeout!r} is not a positive number of seconds")
        if not isinstance(retries, int) or retries < 0:
            raise ImageError(f"retries: {retries!r} is not a count >= 0")
        if credentials is not None and (len(credentials) != 2 or not all(
                isinstance(c, str) for c in credentials) or not credentials[0]):
            raise ImageError("credentials: expected (user, password)")
        ref = Reference(registry, "x")
        self.registry = registry
        self.host = ref.api_host
        self.insecure = insecure
        self.local = ref.is_local if local is None else local
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self._credentials = credentials
        self._auth_file = auth_file
        ctx = _ssl_context(registry, cert_dir, insecure)
        # Started once the registry's own certificates are in: one writer of ctx at a time.
        self._cas = _SystemCAs(ctx)
        self._client = httpx.Client(
            verify=ctx,
            timeout=httpx.Timeout(self.timeout), follow_redirects=True, max_redirects=10,
            headers={"User-Agent": "isolate", "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        self._base: str | None = None
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}
        self._found: dict[str, tuple[str, str] | None] = {}

    def close(self) -> None:
        """Close the connections (idempotent)."""
        self._client.close()
        self._cas.join()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<isolate.images.RegistryClient {self.registry!r}>"

    # --- transport ----------------------------------------------------------------

    def _sleep(self, attempt: int, wait: float | None = None) -> None:
        delay = self.backoff * (2 ** attempt) if wait is None else wait
        time.sleep(min(self.max_wait, delay))

    def _send(self, method: str, url: str, headers: dict[str, str], what: str,
              stream: bool = False) -> httpx.Response:
        """``method url``, retried on connection errors, 429 and 5xx."""
        self._cas.wait()
        attempt = 0
        while True:
            try:
                resp = self._client.send(self._client.build_request(method, url, headers=headers),
                                         stream=stream)
            except httpx.TransportError as e:
                if _is_tls_error(e):
                    raise _TLSFailure(f"{what}: registry {self.registry}: TLS failed: "
                                      f"{_transport_message(e)}") from None
                if attempt >= self.retries:
                    raise ImageError(f"{what}: registry {self.registry} unreachable after "
                                     f"{attempt + 1} tries: {_transport_message(e)}") from None
                self._sleep(attempt)
                attempt += 1
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                said = _registry_message(resp)
                resp.close()
                if attempt >= self.retries:
                    if resp.status_code == 429:
                        raise ImageError(f"{what}: registry {self.registry} still says too many "
                                         f"requests (429) after {attempt + 1} tries: {said}")
                    raise ImageError(f"{what}: registry {self.registry} failed "
                                     f"({resp.status_code}) {attempt + 1} times: {said}")
                self._sleep(attempt, _retry_after(resp) if resp.status_code == 429 else None)
                attempt += 1
                continue
            return resp

    def _base_url(self, what: str) -> str:
        """``https://host`` (or ``http://`` where allowed and TLS is not spoken); pings ``/v2/``
        once, keeping its authentication challenge."""
        with self._lock:
            if self._base is not None:
                return self._base
            schemes = ["https", "http"] if (self.local or self.insecure) else ["https"]
            first: ImageError | None = None
            for scheme in schemes:
                base = f"{scheme}://{self.host}"
                try:
                    resp = self._send("GET", base + "/v2/", {}, what)
                except _TLSFailure as e:
                    # Plain HTTP next, where allowed: a refused certificate says more
                    # than what plain HTTP then gets, a server without TLS less.
                    first = e
                    continue
                except ImageError as e:
                    if first is not None and "CERTIFICATE" in str(first):
                        raise first from None
                    raise e from None
                resp.close()
                if resp.status_code == 401:
                    self._challenge = _pick(resp)
                elif resp.status_code != 200:
                    if first is not None:
                        raise first
                    raise ImageError(f"{what}: {base}/v2/ answered {resp.status_code}: not an OCI "
                                     "distribution (v2) registry")
                self._base = base
                return base
            assert first is not None
            if not (self.local or self.insecure):
                raise ImageError(f"{first} (plain HTTP is used only for a registry on this host "
                                 "or with insecure=True / --tls-verify=false)")
            raise first

    # --- authentication -------------------------------------------------------------

    def _creds(self, repository: str) -> tuple[str, str] | None:
        if self._credentials is not None:
            return self._credentials
        with self._lock:
            if repository not in self._found:      # the files are read once per repository
                self._found[repository] = find_credentials(self.registry, repository,
                                                           self._auth_file)
            return self._found[repository]

    def _token(self, challenge: Challenge, scope: str, repository: str, what: str) -> str:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise ImageError(f"{what}: registry {self.registry} sent a Bearer challenge without "
                             f"a usable realm ({realm!r})")
        if realm.startswith("http://") and not (self.local or self.insecure
                                                or httpx.URL(realm).host in ("127.0.0.1", "localhost")):
            raise ImageError(f"{what}: the token realm {realm!r} is plain HTTP (allowed only "
                             "with insecure=True / --tls-verify=false)")
        params = {"scope": scope}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        creds = self._creds(repository)
        headers = {"Authorization": basic_header(creds)} if creds else {}
        url = str(httpx.URL(realm).copy_merge_params(params))
        resp = self._send("GET", url, headers, what, stream=True)
        try:
            if resp.status_code in (401, 403):
                raise ImageError(f"authentication {'denied' if creds else 'required'} for {what} "
                                 f"(the token service said: {_registry_message(resp)})")
            if resp.status_code != 200:
                raise ImageError(f"{what}: the token service {realm} answered {resp.status_code}: "
                                 f"{_registry_message(resp)}")
            body = _read_limited(resp, _MAX_TOKEN, f"{what}: token response")
        finally:
            resp.close()
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n "):
            raise ImageError(f"{what}: the token service {realm} sent no usable token")
        return token

    def _authorization(self, repository: str, what: str, refresh: bool) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self._creds(repository)
            return basic_header(creds) if creds else None
        if challenge.scheme != "bearer":
            raise ImageError(f"{what}: registry {self.registry} asks for {challenge.scheme!r} "
                             "authentication, which is not supported (Bearer and Basic are)")
        scope = f"repository:{repository}:pull"
        with self._lock:
            token = self._tokens.get(scope)
        if token is None or refresh:
            token = self._token(challenge, scope, repository, what)
            with self._lock:
                self._tokens[scope] = token
        return "Bearer " + token

    def _get(self, repository: str, path: str, what: str, headers: dict[str, str] | None = None,
             stream: bool = True) -> httpx.Response:
        """GET ``/v2/<repository>/<path>`` with authentication (a 401 is answered once)."""
        url = self._base_url(what) + f"/v2/{repository}/{path}"
        hdrs = dict(headers or {})
        auth = self._authorization(repository, what, refresh=False)
        if auth:
            hdrs["Authorization"] = auth
        resp = self._send("GET", url, hdrs, what, stream=stream)
        if resp.status_code != 401:
            return resp
        challenge = _pick(resp)
        resp.close()
        if challenge is not None:
            with self._lock:
                self._challenge = challenge
        again = self._authorization(repository, what, refresh=True)
        if again is not None and (again != auth or challenge is None or challenge.scheme == "bearer"):
            hdrs["Authorization"] = again
            resp = self._send("GET", url, hdrs, what, stream=stream)
            if resp.status_code != 401:
                return resp
            resp.close()
        creds = self._creds(repository)
        raise ImageError(f"authentication {'denied' if creds else 'required'} for {what} "
                         f"(registry {self.registry} answered 401)")

    # --- the API ------------------------------------------------------------------

    def get_manifest(self, repository: str, ref: str, what: str) -> tuple[bytes, str, str]:
        """The manifest or index ``ref`` (a tag or a digest) of ``repository``:
        ``(bytes, media type, digest)``, the bytes verified against the digest."""
        resp = self._get(repository, f"manifests/{ref}", what, {"Accept": ACCEPT})
        try:
            if resp.status_code == 404:
                said = _registry_message(resp)
                raise ImageError(f"{what}: manifest unknown"
                                 + (f" ({said})" if said.lower() != "manifest unknown" else ""))
            if resp.status_code != 200:
                raise ImageError(f"{what}: registry {self.registry} answered {resp.status_code} "
                                 f"for the manifest: {_registry_message(resp)}")
            body = _read_limited(resp, MAX_MANIFEST, f"{what}: manifest")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            header = resp.headers.get("Docker-Content-Digest", "")
        finally:
            resp.close()
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.startswith("sha256:"):
            expected = check_digest(ref, f"{what}: digest")
        elif header.startswith("sha256:"):
            expected = header
        else:
            expected = actual
        if actual != expected:
            raise DigestError(f"{what}: the manifest received hashes to {actual}, not {expected}",
                              expected=expected, actual=actual)
        return body, media_type, actual

    def fetch_blob(self, repository: str, desc: Descriptor, store: Store, what: str, *,
                   progress: Callable[[int], None] | None = None,
                   cancel: threading.Event | None = None) -> Path:
        """Download the blob ``desc`` into ``store`` (nothing to do if it is there); returns its path.

        Writes to the ingest file under an exclusive lock (another thread or
        process fetching the same blob waits, then finds it stored), resumes
        from its size with a Range request, and commits it verified.
        ``progress(n)`` is called with each count of bytes written (the
        resumed part first); setting ``cancel`` stops the download with
        ``Cancelled``, keeping what was written for a later resume.  A
        resumed blob that does not match its digest (what an earlier writer
        left was wrong) is fetched once more from its start.
        """
        try:
            return self._fetch_blob(repository, desc, store, what, progress, cancel)
        except _ResumedBadly:
            return self._fetch_blob(repository, desc, store, what, progress, cancel)

    def _fetch_blob(self, repository: str, desc: Descriptor, store: Store, what: str,
                    progress: Callable[[int], None] | None,
                    cancel: threading.Event | None) -> Path:
        digest = desc.digest
        if store.has_blob(digest):
            return store.blob_path(digest)
        ingest = store.ingest_path(digest)
        fd = os.open(ingest, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            if store.has_blob(digest):
                _drop_if_same(ingest, f.fileno())   # made empty after another writer's commit
                return store.blob_path(digest)
            offset = f.seek(0, os.SEEK_END)
            if offset > desc.size:
                f.truncate(0)
                offset = 0
            # The content is hashed as it is written (a partial file's first): commit then
            # reads nothing again.
            hasher = _hash_prefix(f, offset)
            resumed = offset
            if progress and offset:
                progress(offset)
            failures = 0
            while offset < desc.size:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(digest)
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                resp = self._get(repository, f"blobs/{digest}", f"{what}: blob {digest}", headers)
                try:
                    if resp.status_code == 416 or (resp.status_code == 206 and not _range_starts(
                            resp, offset)):
                        f.truncate(0)      # the registry will not resume there: start over
                        f.seek(0)
                        if progress and offset:
                            progress(-offset)
                        offset = 0
                        hasher = hashlib.sha256()
                        continue
                    if resp.status_code == 200:
                        if offset:
                            f.truncate(0)  # a registry that ignores Range sends it all
                            f.seek(0)
                            if progress:
                                progress(-offset)
                            offset = 0
                            hasher = hashlib.sha256()
                    elif resp.status_code == 404:
                        raise ImageError(f"{what}: blob {digest} unknown to the registry "
                                         f"({_registry_message(resp)})")
                    elif resp.status_code != 206:
                        raise ImageError(f"{what}: registry {self.registry} answered "
                                         f"{resp.status_code} for blob {digest}: "
                                         f"{_registry_message(resp)}")
                    f.seek(offset)
                    # As received: a chunk size would have httpx copy every byte into pieces.
                    for chunk in resp.iter_bytes():
                        if cancel is not None and cancel.is_set():
                            raise Cancelled(digest)
                        if offset + len(chunk) > desc.size:
                            f.truncate(0)
                            raise ImageError(f"{what}: blob {digest}: the registry sent more than "
                                             f"the {desc.size} bytes its descriptor gives")
                        f.write(chunk)
                        hasher.update(chunk)
                        offset += len(chunk)
                        if progress:
                            progress(len(chunk))
                except httpx.TransportError as e:
                    failures += 1
                    if failures > self.retries:
                        raise ImageError(f"{what}: blob {digest}: the download broke off "
                                         f"{failures} times, last: {_transport_message(e)}") from None
                    f.flush()
                    self._sleep(failures - 1)
                    continue
                finally:
                    resp.close()
                f.flush()
                if offset < desc.size:     # the body ended early: resume from there
                    failures += 1
                    if failures > self.retries:
                        raise ImageError(f"{what}: blob {digest}: the registry sent {offset} of "
                                         f"{desc.size} bytes, {failures} times")
            os.fsync(f.fileno())
            try:
                return store.commit(digest, size=desc.size, hashed="sha256:" + hasher.hexdigest())
            except DigestError:
                if resumed:
                    if progress:
                        progress(-offset)
                    raise _ResumedBadly(digest) from None
                raise


def _drop_if_same(path: Path, fd: int) -> None:
    """Remove ``path`` if it is still the file open as ``fd`` (whose lock is held)."""
    try:
        st, mine = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
        path.unlink(missing_ok=True)


def _range_starts(resp: httpx.Response, offset: int) -> bool:
    cr = resp.headers.get("Content-Range", "")
    try:
        unit, _, rest = cr.partition(" ")
        return unit == "bytes" and int(rest.split("-", 1)[0]) == offset
    except ValueError:
        return False


def _read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ImageError(f"{what}: {declared} bytes is more than the {limit} read")
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > limit:
            raise ImageError(f"{what}: more than the {limit} bytes read")
    return bytes(buf)


def _pick(resp: httpx.Response) -> Challenge | None:
    challenges: list[Challenge] = []
    for value in resp.headers.get_list("WWW-Authenticate"):
        challenges += parse_challenges(value)
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return challenges[0] if challenges else None


def _is_tls_error(e: Exception) -> bool:
    seen: Any = e
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(e) or "CERTIFICATE" in str(e)


def _transport_message(e: httpx.TransportError) -> str:
    if isinstance(e, httpx.TimeoutException):
        return f"no answer in time ({type(e).__name__})"
    return str(e) or type(e).__name__


def _hash_prefix(f: Any, length: int) -> Any:
    """A sha256 of the first ``length`` bytes of the file ``f`` (its position is kept)."""
    h = hashlib.sha256()
    if length:
        pos = f.tell()
        f.seek(0)
        left = length
        while left > 0 and (chunk := f.read(min(left, _CHUNK))):
            h.update(chunk)
            left -= len(chunk)
        f.seek(pos)
    return h
