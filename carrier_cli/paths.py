"""Where Carrier keeps its files.

Everything lives in the platform's usual places (platformdirs) unless `CARRIER_HOME`
(or the global `--home` flag, which sets it) moves all of it under one directory. Tests
and operators with several installations rely on that single switch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "carrier"


@dataclass(frozen=True)
class CarrierPaths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.yaml"

    @property
    def secrets_file(self) -> Path:
        return self.config_dir / "secrets.json"

    @property
    def default_database(self) -> Path:
        return self.data_dir / "carrier.db"

    @property
    def characters_dir(self) -> Path:
        return self.data_dir / "characters"

    def ensure(self) -> None:
        for directory in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)


def carrier_paths() -> CarrierPaths:
    """Resolve the directories now (not at import), so `--home` set late still applies."""
    home = os.environ.get("CARRIER_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return CarrierPaths(root / "config", root / "data", root / "cache", root / "logs")
    import platformdirs

    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
    return CarrierPaths(
        Path(dirs.user_config_dir),
        Path(dirs.user_data_dir),
        Path(dirs.user_cache_dir),
        Path(dirs.user_log_dir),
    )
