"""A real registry for the tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

``Registry`` starts ``docker-registry serve CONFIG`` on a free port with its
own storage (plain HTTP, TLS, htpasswd or token auth), ``push`` uploads an
image from an OCI layout through the registry's own API (byte-exact, any
media type), ``FaultProxy`` sits in front of it to count, slow down, corrupt,
refuse (429) or hang, and ``TokenServer`` is the Bearer realm (JWTs signed by
a certificate in the registry's rootcertbundle, sent as ``x5c``).
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates --------------------------------------------------------------------

def make_ca(directory: Path, name: str = "isolate test CA") -> tuple[Any, Any]:
    """A CA key and self-signed certificate, written to ``directory/ca.crt``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_server_cert(directory: Path, ca_key: Any, ca_cert: Any) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by the CA: (cert, key) paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, k = directory / "server.pem", directory / "server.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return crt, k


# --- the Bearer realm ---------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token endpoint (``http://127.0.0.1:PORT/token``) granting what ``scope`` asks to
    ``users`` (and pull to anyone if ``anonymous_pull``); counts the tokens it issued."""

    def __init__(self, directory: Path, users: dict[str, str], *, service: str = "isolate-test",
                 issuer: str = "isolate-test-issuer", anonymous_pull: bool = False) -> None:
        from cryptography.hazmat.primitives import serialization

        self.key, self.cert = make_ca(directory / "token", "isolate token signer")
        self.bundle = directory / "token" / "ca.crt"
        self.der = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self.users, self.service, self.issuer = users, service, issuer
        self.anonymous_pull = anonymous_pull
        self.issued: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if owner.users.get(u) != p:
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    user = u
                access = []
                for scope in q.get("scope", []):
                    typ, name, actions = scope.split(":")
                    allowed = actions.split(",") if user else (
                        ["pull"] if owner.anonymous_pull and "pull" in actions.split(",") else [])
                    access.append({"type": typ, "name": name, "actions": allowed})
                token = owner.sign(user or "", access)
                owner.issued.append(",".join(q.get("scope", [])))
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.der]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = (_b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode()))
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + _b64url(sig)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the registry -----------------------------------------------------------------------

class Registry:
    """``docker-registry serve`` on 127.0.0.1:``port``, storage under ``directory``.

    ``tls``: (cert, key) paths; ``htpasswd``: the file; ``token``: a TokenServer.
    """

    def __init__(self, directory: Path, *, tls: tuple[Path, Path] | None = None,
                 htpasswd: Path | None = None, token: TokenServer | None = None) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.log = directory / "registry.log"
        for attempt in range(3):      # another process may take the free port first: pick again
            self.port = free_port()
            self.host = f"127.0.0.1:{self.port}"
            lines = ["version: 0.1", "log:", "  level: info", "  accesslog:", "    disabled: false",
                     "storage:", "  filesystem:", f"    rootdirectory: {directory / 'storage'}",
                     "  delete:", "    enabled: true",
                     "http:", f"  addr: 127.0.0.1:{self.port}", "  secret: isolate-test"]
            if tls:
                lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
            if htpasswd:
                lines += ["auth:", "  htpasswd:", "    realm: isolate-test", f"    path: {htpasswd}"]
            if token:
                lines += ["auth:", "  token:", f"    realm: {token.realm}",
                          f"    service: {token.service}", f"    issuer: {token.issuer}",
                          f"    rootcertbundle: {token.bundle}"]
            (directory / "config.yml").write_text("\n".join(lines) + "\n")
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen([REGISTRY, "serve", str(directory / "config.yml")],
                                             stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            if self._wait() or attempt == 2:
                return
        raise RuntimeError("unreachable")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _wait(self) -> bool:
        """True once the registry serves; False if it exited (its port was taken)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log.read_text(errors="replace"):
                    return False
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            time.sleep(0.05)            # the listener may be another process's: ours still runs?
            if self.proc.poll() is None:
                return True
        self.close()
        raise RuntimeError("docker-registry did not start listening in 20 s")

    def blob_gets(self) -> list[str]:
        """The digests of every blob GET the registry answered so far (its access log)."""
        text = self.log.read_text(errors="replace")
        return re.findall(r'"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 20[06]', text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def push(base: str, name: str, layout: Path, tag: str, *, as_tag: str | None = None,
         auth: tuple[str, str] | None = None, verify: Any = True) -> str:
    """Push the image tagged ``tag`` in the OCI layout (manifest or index, as stored) to
    ``base``/``name``:``as_tag`` through the v2 API, byte-exact; returns its digest."""
    index = json.loads((layout / "index.json").read_text())
    top = [m for m in index["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
    with httpx.Client(base_url=base, auth=auth, verify=verify, timeout=30) as c:
        def blob(d: str) -> bytes:
            return (layout / "blobs" / "sha256" / d[7:]).read_bytes()

        def put_blob(d: str) -> None:
            if c.head(f"/v2/{name}/blobs/{d}").status_code == 200:
                return
            r = c.post(f"/v2/{name}/blobs/uploads/")
            assert r.status_code == 202, r.text
            loc = r.headers["Location"]
            url = httpx.URL(base).join(loc).copy_merge_params({"digest": d})
            r = c.put(url, content=blob(d),
                      headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text

        def put_manifest(desc: dict[str, Any], ref: str) -> None:
            data = blob(desc["digest"])
            doc = json.loads(data)
            if "manifests" in doc:
                for m in doc["manifests"]:
                    put_manifest(m, m["digest"])
            else:
                put_blob(doc["config"]["digest"])
                for layer in doc["layers"]:
                    put_blob(layer["digest"])
            r = c.put(f"/v2/{name}/manifests/{ref}", content=data,
                      headers={"Content-Type": desc["mediaType"]})
            assert r.status_code == 201, r.text

        put_manifest(top, as_tag or tag)
    return str(top["digest"])


def add_index(layout: Path, tag: str, entries: list[tuple[str, str]]) -> str:
    """Tag ``tag`` in the layout: an index of the manifests tagged ``entries``' tags, each for
    its platform ("os/arch[/variant]"); returns the index's digest."""
    import hashlib

    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    by_tag = {m.get("annotations", {}).get("org.opencontainers.image.ref.name"): m
              for m in index["manifests"]}
    ms = []
    for t, plat in entries:
        m = dict(by_tag[t])
        m.pop("annotations", None)
        parts = plat.split("/")
        m["platform"] = {"os": parts[0], "architecture": parts[1],
                         **({"variant": parts[2]} if len(parts) > 2 else {})}
        ms.append(m)
    data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": ms}).encode()
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / d[7:]).write_bytes(data)
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d,
                               "size": len(data),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))
    return d


# --- a proxy that misbehaves on purpose -----------------------------------------------

class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` (a registry's base URL).

    It records every request (``requests``: (method, path, Range header)) and
    the most blob bodies it sent at once (``most_in_flight``), and can: send at most ``rate`` bytes/s of each body; drop Range headers
    (``ignore_range``, a registry that sends whole blobs); name manifests
    ``manifest_type`` in their Content-Type; answer 429 to the
    next ``too_many`` requests; never answer (``hang``); flip a byte of the
    blobs in ``corrupt``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str, str]] = []
        self.rate: float | None = None
        self.too_many = 0
        self.hang = False
        self.corrupt: set[str] = set()
        self.ignore_range = False
        self.manifest_type: str | None = None
        self.most_in_flight = 0
        self._in_flight = 0
        self._count = threading.Lock()
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=upstream, timeout=60)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.forward("HEAD")

            def do_GET(self) -> None:
                self.forward("GET")

            def forward(self, method: str) -> None:
                owner.requests.append((method, self.path, self.headers.get("Range", "")))
                if owner.hang:
                    owner._stop.wait(120)
                    self.close_connection = True
                    return
                if owner.too_many > 0:
                    owner.too_many -= 1
                    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                forwarded = ("accept", "authorization") + (() if owner.ignore_range else ("range",))
                headers = {k: v for k, v in self.headers.items() if k.lower() in forwarded}
                with owner._client.stream(method, self.path, headers=headers) as r:
                    self.send_response(r.status_code)
                    for k, v in r.headers.items():
                        if k.lower() not in ("transfer-encoding", "connection", "content-encoding"):
                            if (k.lower() == "content-type" and owner.manifest_type
                                    and "/manifests/" in self.path):
                                v = owner.manifest_type
                            self.send_header(k, v)
                    self.end_headers()
                    if method == "HEAD":
                        return
                    flip = any(self.path.endswith("/blobs/" + d) for d in owner.corrupt)
                    blob = "/blobs/" in self.path
                    with owner._count:
                        owner._in_flight += blob
                        owner.most_in_flight = max(owner.most_in_flight, owner._in_flight)
                    try:
                        for chunk in r.iter_raw(16384):
                            if flip and chunk:
                                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                                flip = False
                            self.wfile.write(chunk)
                            if owner.rate:
                                time.sleep(len(chunk) / owner.rate)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True
                    finally:
                        with owner._count:
                            owner._in_flight -= blob

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def blob_gets(self) -> list[str]:
        return [p.rsplit("/", 1)[1] for m, p, _ in self.requests if m == "GET" and "/blobs/" in p]

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._client.close()
