"""How the server is bound and guarded (built from ``mlestar.settings.Settings``)."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlestar.errors import ConfigError
from mlestar.settings import Settings

TOKEN_ENV = "MLESTAR_TOKEN"


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as exposed


@dataclass(frozen=True)
class ServerOptions:
    runs_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    # How often a live event stream looks at the run's SQLite for new events.
    poll_interval_s: float = 0.5
    # Interpreter used to spawn `python -m mlestar run/resume`.
    python: str = field(default=sys.executable)

    @property
    def local_only(self) -> bool:
        return is_loopback(self.host)

    @property
    def auth_required(self) -> bool:
        # A token set by the user is honoured even on localhost (shared machines).
        return self.token is not None or not self.local_only

    def check(self) -> None:
        """Refuse settings that would expose runs (and process spawning) to the network unguarded."""
        if not self.local_only and not self.token:
            raise ConfigError(
                f"refusing to listen on {self.host} without a token: set {TOKEN_ENV} to a long random "
                "string (or bind to 127.0.0.1)"
            )
        if self.token is not None and len(self.token) < 8:
            raise ConfigError(f"{TOKEN_ENV} is too short: use at least 8 characters")

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerOptions:
        token = settings.token.get_secret_value() if settings.token is not None else None
        return cls(runs_dir=Path(settings.runs_dir).resolve(), host=settings.host, port=settings.port, token=token)
