"""API keys: making them, hashing them, and checking one a request carries.

A key is `crr_` + 32 random bytes (urlsafe base64, 43 characters). It is shown once, when
created; the database keeps only its first 8 characters after the marker (the prefix, not
secret: enough to find the row and to tell keys apart in `list`) and a salted scrypt hash,
so every process sharing the database accepts the same keys and a copy of the database
gives none away.

scrypt is slow on purpose (~50 ms at n=16384). So that a busy API does not pay it on every
request, a key that verified once is remembered in this process as the SHA-256 of the key
next to the stored hash it matched; the row is still read on every request, so a key
revoked by any process is refused at once, and a changed hash is verified again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, cast, get_args

from carrier_cli.errors import InputError
from carrier_cli.redact import register_secret

if TYPE_CHECKING:
    from carrier_cli.memory.apikeys import StoredKey
    from carrier_cli.memory.store import MemoryStore

MARKER = "crr_"
PREFIX_CHARS = 8
MAX_KEY_CHARS = 200  # longer input is refused before any database or hashing work
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
SCRYPT_N, SCRYPT_R, SCRYPT_P = 16384, 8, 1
_KEY_BODY = re.compile(r"^[A-Za-z0-9_-]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_FORMS = "1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit"
_VERIFIED_MAX = 1024  # keys remembered as verified in one process

Scope = Literal["read", "chat", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)  # weakest first: each includes the ones before


def allows(scope: str, needed: str) -> bool:
    """Whether a key of `scope` may do what needs `needed` (read < chat < admin). An
    unknown scope allows nothing."""
    if scope not in SCOPES or needed not in SCOPES:
        return False
    return SCOPES.index(cast(Scope, scope)) >= SCOPES.index(cast(Scope, needed))


def parse_scope(value: str, *, label: str = "scope") -> Scope:
    """The scope, or an InputError naming `label` and the accepted scopes."""
    if value not in SCOPES:
        raise InputError(
            f"{label} {value!r} is not a scope.",
            hint="Use read (GET only), chat (read and send messages) or admin (everything).",
        )
    return cast(Scope, value)


def check_name(name: str, *, label: str = "name") -> str:
    """The name, or an InputError naming `label` and the accepted form."""
    if not _NAME.match(name):
        raise InputError(
            f"API key {label} {name!r} is not valid.", hint=f"Use {NAME_FORMS} (e.g. ci-bot)."
        )
    return name


# ---------------------------------------------------------------------- keys and hashes
def generate_key() -> str:
    return MARKER + secrets.token_urlsafe(32)


def key_prefix(raw: str) -> str | None:
    """The lookup prefix of a well-formed key; None for anything else (wrong marker, too
    long, not ASCII, characters a key never has), decided without the database."""
    if len(raw) > MAX_KEY_CHARS or not raw.isascii() or not raw.startswith(MARKER):
        return None
    body = raw[len(MARKER) :]
    if len(body) < PREFIX_CHARS or not _KEY_BODY.match(body):
        return None
    return body[:PREFIX_CHARS]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(raw: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        raw.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32
    )


def hash_key(raw: str) -> str:
    """`scrypt$n=16384,r=8,p=1$<salt b64>$<digest b64>`: parameters, salt and digest in one
    field, so stronger parameters later still verify the keys hashed before."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(raw, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_key(raw: str, stored: str) -> bool:
    """Whether `raw` is the key `stored` is the hash of (constant-time comparison). A
    stored value in a form this code does not know verifies nothing."""
    try:
        algorithm, params, salt_b64, digest_b64 = stored.split("$")
        if algorithm != "scrypt":
            return False
        values = dict(part.split("=", 1) for part in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        if not (2 <= n <= 1 << 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        actual = _scrypt(raw, salt, n, r, p)
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(actual, expected)


# ---------------------------------------------------------------------- the service
@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key, never its hash."""

    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def display_prefix(self) -> str:
        return f"{MARKER}{self.prefix}…"


def _info(row: StoredKey) -> KeyInfo:
    return KeyInfo(
        name=row.name,
        scope=cast(Scope, row.scope),
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _fingerprint(raw: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8")).digest()


class ApiKeys:
    """Keys in one memory database. `clock` is injectable so tests can move time."""

    def __init__(self, store: MemoryStore, *, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self._verified: dict[str, bytes] = {}  # stored hash -> SHA-256 of the key

    async def create(self, name: str, scope: str = "chat") -> tuple[str, KeyInfo]:
        """A new key: (the key, shown this once; what may be shown about it)."""
        from carrier_cli.memory.apikeys import StoredKey, insert_key

        check_name(name)
        checked = parse_scope(scope)
        raw = generate_key()
        register_secret(raw)
        prefix = key_prefix(raw)
        assert prefix is not None  # generate_key makes well-formed keys
        hashed = await asyncio.to_thread(hash_key, raw)
        row = StoredKey(
            id=uuid.uuid4(),
            name=name,
            scope=checked,
            prefix=prefix,
            hash=hashed,
            created_at=self.clock(),
            last_used_at=None,
            revoked_at=None,
        )
        if not await insert_key(self.store, row):
            raise InputError(
                f"An API key named {name!r} already exists.",
                hint="Choose another name (`carrier api-keys list` shows the names taken; "
                "a revoked key keeps its name).",
            )
        self._verified[hashed] = _fingerprint(raw)
        return raw, _info(row)

    async def list(self) -> list[KeyInfo]:
        from carrier_cli.memory.apikeys import list_keys

        return [_info(row) for row in await list_keys(self.store)]

    async def revoke(self, name: str) -> KeyInfo:
        from carrier_cli.memory.apikeys import revoke_key

        row = await revoke_key(self.store, name, self.clock())
        if row is None:
            raise InputError(
                f"No API key is named {name!r}.",
                hint="`carrier api-keys list` shows the keys there are.",
            )
        self._verified.pop(row.hash, None)
        return _info(row)

    async def any_active(self) -> bool:
        from carrier_cli.memory.apikeys import count_active

        return await count_active(self.store) > 0

    async def authenticate(self, raw: str) -> KeyInfo | None:
        """The key's info when `raw` is a live key; None for a malformed, unknown, wrong
        or revoked one (the caller answers 401 without saying which)."""
        from carrier_cli.memory.apikeys import keys_with_prefix, touch_key

        prefix = key_prefix(raw)
        if prefix is None:
            return None
        fingerprint = _fingerprint(raw)
        for row in await keys_with_prefix(self.store, prefix):
            # A revoked row is never hashed against: refusing it costs no scrypt.
            if row.revoked_at is not None or not await self._matches(raw, fingerprint, row.hash):
                continue
            now = self.clock()
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
                await touch_key(self.store, row.id, now)
                row = _replace_last_used(row, now)
            return _info(row)
        return None

    def remembered(self, raw: str) -> bool:
        """Whether `raw` verified in this process before, so checking it again costs no
        scrypt (the API gates the checks that do; see clients/api/limits.py)."""
        fingerprint = _fingerprint(raw)
        return any(hmac.compare_digest(known, fingerprint) for known in self._verified.values())

    async def _matches(self, raw: str, fingerprint: bytes, stored: str) -> bool:
        known = self._verified.get(stored)
        if known is not None:
            return hmac.compare_digest(known, fingerprint)
        if not await asyncio.to_thread(verify_key, raw, stored):
            return False
        register_secret(raw)  # a live key this process saw: never in its logs
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.pop(next(iter(self._verified)))
        self._verified[stored] = fingerprint
        return True


def _replace_last_used(row: StoredKey, moment: datetime) -> StoredKey:
    from dataclasses import replace

    return replace(row, last_used_at=moment)
