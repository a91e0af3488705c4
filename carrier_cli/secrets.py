"""Secret storage: the system keyring when a real one exists, else a 0600 file.

Headless servers (where bots run) rarely have a keyring daemon; falling back to a
private file keeps `carrier keys set` working there while desktops get the keyring.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from carrier_cli.errors import InputError
from carrier_cli.paths import CarrierPaths, carrier_paths

SERVICE = "carrier"
_INDEX_KEY = "__carrier_key_names__"

# Short names used by `carrier keys` and the setting each one fills.
KEY_NAMES: dict[str, str] = {
    "openai": "openai_api_key",
    "anthropic": "anthropic_api_key",
    "discord": "discord_api_token",
    "instagram": "instagram_access_token",
    "ftp": "ftp_password",
}
# Names whose keys fill no setting: read where a setting names them (webhook:NAME, by a
# `webhooks:` entry's secret_key).
REFERENCED_KEYS: tuple[str, ...] = ("webhook",)


@dataclass(frozen=True)
class StoredSecret:
    value: str
    backend: str


def _real_keyring():  # type: ignore[no-untyped-def]
    """The keyring backend if it is a real one, else None (fail/null/chainer-of-nothing)."""
    if os.environ.get("CARRIER_KEYRING", "").lower() in {"0", "no", "off", "file"}:
        return None
    if os.environ.get("CARRIER_HOME") and os.environ.get("CARRIER_KEYRING", "") == "":
        # A CARRIER_HOME installation is self-contained: keep its secrets inside it.
        return None
    try:
        import keyring
        from keyring.backends import chainer, fail

        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, fail.Keyring) or backend.priority <= 0:  # type: ignore[operator]
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    if type(backend).__module__.startswith("keyring.backends.null"):
        return None
    return backend


class SecretStore:
    def __init__(self, paths: CarrierPaths | None = None) -> None:
        self.paths = paths or carrier_paths()
        self._keyring = _real_keyring()

    @property
    def backend_name(self) -> str:
        if self._keyring is not None:
            return f"keyring ({type(self._keyring).__name__})"
        return f"file {self.paths.secrets_file}"

    @property
    def uses_file(self) -> bool:
        return self._keyring is None

    # -- file backend -------------------------------------------------------------------
    def _read_file(self) -> dict[str, str]:
        path = self.paths.secrets_file
        if not path.is_file():
            return {}
        _warn_if_exposed(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError(
                f"The secrets file {path} is unreadable or not valid JSON.",
                hint="Remove it and store the keys again with `carrier keys set NAME`.",
            ) from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write_file(self, data: dict[str, str]) -> None:
        path = self.paths.secrets_file
        # A directory made here holds the keys: private to the user, as ssh makes ~/.ssh.
        # (mkdir's mode applies to the last component; an existing directory is left as
        # the operator set it, the file's own 0600 is what protects the keys.)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    # -- keyring index (keyring cannot list entries) --------------------------------------
    def _index(self) -> list[str]:
        assert self._keyring is not None
        raw = self._keyring.get_password(SERVICE, _INDEX_KEY)
        return json.loads(raw) if raw else []

    def _set_index(self, names: list[str]) -> None:
        assert self._keyring is not None
        self._keyring.set_password(SERVICE, _INDEX_KEY, json.dumps(sorted(set(names))))

    # -- API -------------------------------------------------------------------------------
    def get(self, name: str) -> StoredSecret | None:
        if self._keyring is not None:
            value = self._keyring.get_password(SERVICE, name)
            return StoredSecret(value, "keyring") if value is not None else None
        value = self._read_file().get(name)
        return StoredSecret(value, "secrets file") if value is not None else None

    def set(self, name: str, value: str) -> None:
        if self._keyring is not None:
            self._keyring.set_password(SERVICE, name, value)
            self._set_index([*self._index(), name])
            return
        data = self._read_file()
        data[name] = value
        self._write_file(data)

    def remove(self, name: str) -> bool:
        if self._keyring is not None:
            if self._keyring.get_password(SERVICE, name) is None:
                return False
            self._keyring.delete_password(SERVICE, name)
            self._set_index([n for n in self._index() if n != name])
            return True
        data = self._read_file()
        if name not in data:
            return False
        del data[name]
        self._write_file(data)
        return True

    def names(self) -> list[str]:
        if self._keyring is not None:
            return sorted(self._index())
        return sorted(self._read_file())


_WARNED: set[Path] = set()


def _warn_if_exposed(path: Path) -> None:
    """Warn on stderr when the secrets file can be read or written by other users.

    ssh refuses a private key others can read; Carrier warns instead, and keeps going.
    The keys in an exposed file are already readable by whoever could read it, so refusing
    would not protect them, it would only stop the bot (a systemd restart after a backup
    restore reset the mode, say) with no gain. A loud warning naming the file, its mode and
    the exact chmod fixes it in one command; `carrier keys set` rewrites the file 0600.
    Once per file and process, so a command that reads several keys warns once.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if not mode & 0o077 or path in _WARNED:
        return
    _WARNED.add(path)
    from carrier_cli.output import warn

    warn(
        f"The secrets file {path} has mode {mode:04o}: other users on this machine can "
        f"read or change your API keys. Run `chmod 600 {path}` (and consider rotating the "
        "keys it holds)."
    )


def validate_key_name(name: str) -> str:
    """Known names map to settings; `discord:<character>` style names hold per-character keys."""
    base, _, rest = name.partition(":")
    if base in REFERENCED_KEYS and not rest:
        raise InputError(
            f"The key name '{name}' needs a name after '{base}:'.",
            hint=f"E.g. `carrier keys set {base}:myapp`, named by secret_key in the config.",
        )
    known = base in KEY_NAMES or base in REFERENCED_KEYS
    if not known or not name.replace(":", "").replace("-", "").replace("_", "").isalnum():
        raise InputError(
            f"Unknown key name '{name}'.",
            hint=f"Use one of: {', '.join(KEY_NAMES)} (optionally NAME:CHARACTER, "
            "e.g. discord:eliza for a per-character bot token), or webhook:NAME for a "
            "webhook's signing secret.",
        )
    return name


MAX_KEY_VALUE_CHARS = 4096  # the longest real credential seen is ~2,000 (Graph API tokens)
# Names whose values are passwords a person chose: spaces inside are legitimate there.
_SPACES_ALLOWED = frozenset({"ftp"})


def validate_key_value(name: str, value: str) -> str:
    """The value to store (stripped), or an InputError saying what is wrong with it.

    What this catches is what a paste gets wrong: two keys pasted together (a newline or
    space inside), a terminal escape or NUL picked up with the text, or a whole file piped
    in by mistake. None of these can be a working key, and stored they fail later, far from
    the paste, as an authentication error that does not say why."""
    value = value.strip()
    label = f"The value for key '{name}'"
    if not value:
        raise InputError(f"No value given for key '{name}'.", hint="Type or pipe the key.")
    if len(value) > MAX_KEY_VALUE_CHARS:
        raise InputError(
            f"{label} is {len(value):,} characters long; keys and tokens are at most "
            f"{MAX_KEY_VALUE_CHARS:,}.",
            hint='Pipe only the key itself (e.g. `printf %s "$KEY" | carrier keys set '
            f"{name}`), not a file that holds it among other text.",
        )
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        kind = "a line break" if bad in "\r\n" else f"a control character (U+{ord(bad):04X})"
        raise InputError(
            f"{label} contains {kind}.",
            hint="Paste one key on one line; if two keys were pasted together, store them "
            "one at a time.",
        )
    if name.split(":", 1)[0] not in _SPACES_ALLOWED and any(c.isspace() for c in value):
        raise InputError(
            f"{label} contains a space; API keys and tokens never do.",
            hint="Check the paste: only the key, without a label like 'Bearer' or a "
            "second key after it.",
        )
    return value
