"""Database URLs as operators write them, turned into what SQLAlchemy's async drivers need.

What Carrier accepts as a database URL (and says so when it refuses one):

* `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (`sqlite+aiosqlite://` too);
* an absolute file path (`/var/lib/carrier.db`, `~/carrier.db`) or one starting with `./`
  or `../`, for the built-in SQLite database in that file;
* `postgresql://user:password@host:5432/dbname` (`postgres://`, `postgresql+asyncpg://`
  and other `postgresql+driver://` spellings are rewritten for asyncpg).

Anything else is refused rather than guessed at: a bare word such as `notaurl` used to be
taken as a relative SQLite path and silently created a database file in the working
directory, and a URL with an unclosed IPv6 bracket reached the driver as a raw ValueError.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from carrier_cli.errors import InputError
from carrier_cli.paths import carrier_paths

DATABASE_URL_HINT = (
    "A database URL is sqlite:///relative/path.db or sqlite:////absolute/path.db "
    "(sqlite+aiosqlite:// too), a file path (/data/carrier.db, ~/carrier.db, ./carrier.db), or "
    "postgresql://user:password@host:5432/dbname (postgres:// and postgresql+asyncpg:// "
    "too; percent-encode @ : / in the password, e.g. %40 for @). Leave it unset for the "
    "built-in SQLite database in the data directory."
)

# user:password@ at the start of the authority. The user part cannot hold `:` `/` `@`, the
# password runs to the first `@` (as SQLAlchemy parses it); a second unencoded `@` is
# refused by `check_database_url`, so this never leaves part of a password visible.
_USERINFO = re.compile(r"(://[^:/@]*):([^@]*)@")

# Secrets passed as query parameters: libpq and SQLAlchemy's asyncpg dialect take
# `?password=` (and `sslpassword=`) as well as user:password@, and HTTP base URLs
# sometimes carry `?key=` / `?token=`. The value runs to the next `&` or `#`.
_QUERY_SECRET = re.compile(
    r"([?&](?:password|passwd|pwd|sslpassword|secret|token|access_token|api_key|apikey|key)=)"
    r"([^&#]*)",
    re.I,
)


def default_sqlite_path() -> Path:
    return carrier_paths().default_database


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../"))


# Why a URL is refused, shared with the other URL settings (config.check_url). Never the
# URL itself, nor a parser's message: either may quote the password.
UNPARSABLE_URL = "is not a valid URL (its host, port or [IPv6] brackets cannot be parsed)"


def check_url_characters(url: str) -> None:
    """Raise ValueError when the (stripped) URL holds a space or a control character."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("contains spaces or control characters")


def check_database_url(url: str) -> None:
    """Raise ValueError saying why `url` is not a database URL Carrier can use.

    The message never repeats the URL, which may hold a password.
    """
    url = url.strip()
    if not url:
        raise ValueError("is empty")
    check_url_characters(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        if _looks_like_path(url):
            return
        raise ValueError(
            "is neither a URL nor a file path (a bare name would silently create a SQLite "
            "file of that name in the working directory)"
        )
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        if not rest.startswith("/"):
            raise ValueError(
                "is a sqlite URL without the third slash (sqlite:///relative.db, "
                "sqlite:////absolute.db)"
            )
        return
    if base not in ("postgres", "postgresql"):
        raise ValueError(f"has the scheme `{scheme}://`, which Carrier does not support")
    # SQLAlchemy's own parser decides what the driver will see, so it is the check. Its
    # error text is not repeated: it may quote a piece of the authority (the password).
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(f"postgresql+asyncpg://{rest}")
        port = parsed.port
    except ValueError:
        raise ValueError(UNPARSABLE_URL) from None
    if parsed.host and "@" in parsed.host:
        raise ValueError("has an unencoded `@` in the user or password (write it as %40)")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"has the port {port}, outside 1-65535")


def normalise_url(url: str | None) -> str:
    """Accept postgres://, postgresql://, postgresql+asyncpg://, sqlite:///file or a path."""
    if not url:
        path = default_sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{path}"
    url = url.strip()
    try:
        check_database_url(url)
    except ValueError as exc:
        # Settings validate this already; this guards library callers that pass a URL in.
        raise InputError(
            f"The database URL (DATABASE_URL or database_url) {exc}.", hint=DATABASE_URL_HINT
        ) from None
    scheme, sep, rest = url.partition("://")
    if not sep:
        path = Path(url).expanduser().resolve()
        return f"sqlite+aiosqlite:///{path}"
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        # libpq spells TLS `sslmode=require` (hosted PostgreSQL URLs do); asyncpg: `ssl=`.
        rest = re.sub(r"([?&])sslmode=", r"\1ssl=", rest)
        return f"postgresql+asyncpg://{rest}"
    return f"sqlite+aiosqlite://{rest}"


def backend_of(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def url_password(url: str) -> str | None:
    """The password in a URL's user:password@ part, if any (to register with the scrubber)."""
    match = _USERINFO.search(url)
    return match.group(2) if match and match.group(2) else None


def url_password_forms(url: str) -> set[str]:
    """Every secret in the URL (the user:password@ password and secret query parameters),
    as written and percent-decoded: drivers and errors may print either."""
    secrets = [url_password(url), *(m.group(2) for m in _QUERY_SECRET.finditer(url))]
    return {form for secret in secrets if secret for form in (secret, unquote(secret))}


def mask_url(url: str) -> str:
    """Hide the secrets: postgresql://carrier:***@db/carrier, ...?password=***."""
    masked = _USERINFO.sub(
        lambda m: f"{m.group(1)}:***@" if m.group(2) else f"{m.group(1)}@",
        url,
        count=1,
    )
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}***" if m.group(2) else m.group(0), masked)


def sqlite_file(url: str) -> Path | None:
    if backend_of(url) != "sqlite":
        return None
    rest = url.split("://", 1)[1]
    if rest.startswith("/") and rest not in ("/", "/:memory:"):
        return Path(rest[1:])
    return None


# Schemes each kind of URL setting accepts (the database kind has its own rules above).
URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "http": ("http", "https"),
    # discord.py accepts an http(s) gateway URL too (it upgrades the connection).
    "ws": ("ws", "wss", "http", "https"),
    "redis": ("redis", "rediss"),
}


def check_url(value: str, kind: str) -> None:
    """Raise ValueError saying why `value` is not a URL of `kind` ("database", or a key of
    URL_SCHEMES). The URL is never echoed: it may carry a user:password@ part. One set of
    rules for every URL Carrier reads: the settings (config.check_url) and webhook URLs."""
    if kind == "database":
        check_database_url(value)
        return
    from urllib.parse import urlsplit

    schemes = URL_SCHEMES[kind]
    url = value.strip()
    check_url_characters(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(UNPARSABLE_URL) from None
    if parts.scheme.lower() not in schemes or not parts.netloc:
        raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise ValueError("has no host name")
    if port is not None and port == 0:
        raise ValueError("has the port 0")
