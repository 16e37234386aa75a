"""Registry credentials and authentication challenges, read as podman and skopeo read them.

Credentials come from, in order: what the caller gives, the file named by
``auth_file`` (``--authfile``), ``$REGISTRY_AUTH_FILE``,
``$XDG_RUNTIME_DIR/containers/auth.json`` and ``~/.docker/config.json``.
Each is a JSON object whose ``auths`` map has a key per registry (``host``,
``host:port``, ``https://host/v1/``, or a ``host/namespace`` prefix of a
repository; the longest match wins) and a base64 ``auth`` of ``user:pass``.

``Challenge`` is one ``WWW-Authenticate`` challenge (``Bearer realm=...,
service=..., scope=...`` or ``Basic realm=...``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ImageError

__all__ = ["Challenge", "parse_challenges", "auth_files", "find_credentials", "basic_header"]

_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
# auth-param = token "=" ( token / quoted-string ), RFC 7235.
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')
_SCHEME = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s+|$)")
_MAX_AUTH_FILE = 1 << 20


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: its ``scheme`` (lower case) and parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` header (malformed parts are skipped)."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME.match(header, pos)
        if m is None:
            break
        scheme, pos = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM.match(header, pos)
            if p is None:
                break
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
        out.append(Challenge(scheme, params))
        while pos < len(header) and header[pos] in ", ":
            pos += 1
    return out


def auth_files(auth_file: str | os.PathLike[str] | None = None) -> list[Path]:
    """The credential files looked at, in order (whether they exist or not)."""
    files: list[Path] = []
    if auth_file is not None:
        files.append(Path(auth_file))
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        files.append(Path(env))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        files.append(Path(runtime) / "containers" / "auth.json")
    files.append(Path(os.path.expanduser("~")) / ".docker" / "config.json")
    return files


def _normalize_key(key: str) -> str:
    k = re.sub(r"^[a-z]+://", "", key.strip())
    k = re.sub(r"/v[12]/?$", "", k).rstrip("/")
    first, sep, rest = k.partition("/")
    if first in _HUB_KEYS:
        first = "docker.io"
    return first + sep + rest


def _read_auths(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_AUTH_FILE + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ImageError(f"credentials file {str(path)!r}: {e.strerror}") from None
    if len(data) > _MAX_AUTH_FILE:
        raise ImageError(f"credentials file {str(path)!r}: larger than {_MAX_AUTH_FILE} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"credentials file {str(path)!r}: not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"credentials file {str(path)!r}: expected an object")
    auths = doc.get("auths", {})
    if not isinstance(auths, dict):
        raise ImageError(f"credentials file {str(path)!r}: 'auths' is not an object")
    return auths


def _decode(path: Path, key: str, entry: Any) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        raise ImageError(f"credentials file {str(path)!r}: auths[{key!r}] is not an object")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            text = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ImageError(f"credentials file {str(path)!r}: auths[{key!r}].auth is not "
                             "base64 of user:password") from None
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise ImageError(f"credentials file {str(path)!r}: auths[{key!r}].auth is not "
                             "base64 of user:password")
        return user, password
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return name, secret
    return None


def find_credentials(registry: str, repository: str = "",
                     auth_file: str | os.PathLike[str] | None = None) -> tuple[str, str] | None:
    """``(user, password)`` for ``registry`` (and ``repository`` on it) from the first
    credentials file that has an entry for it, else None.

    A key naming a repository prefix (``host/ns``) wins over the registry's
    own key, as in podman.  A malformed file raises ``ImageError`` naming it.
    """
    target = _normalize_key(registry) + ("/" + repository if repository else "")
    for path in auth_files(auth_file):
        auths = _read_auths(path)
        if not auths:
            continue
        best: tuple[int, str, Any] | None = None
        for key, entry in auths.items():
            k = _normalize_key(str(key))
            if target == k or target.startswith(k + "/"):
                if best is None or len(k) > best[0]:
                    best = (len(k), str(key), entry)
        if best is not None:
            creds = _decode(path, best[1], best[2])
            if creds is not None:
                return creds
    return None


def basic_header(credentials: tuple[str, str]) -> str:
    """The ``Authorization`` value of HTTP Basic for ``(user, password)``."""
    raw = f"{credentials[0]}:{credentials[1]}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
