"""Check that the public URL really serves the uploaded file before Instagram is asked to.

When HTTP_SERVER does not serve FTP_DIRECTORY, Instagram answers with a generic
"media could not be fetched" error minutes later; a HEAD request here gives a precise
explanation right away.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from carrier_cli.errors import ConfigError, RuntimeFailure

log = logging.getLogger(__name__)


def public_url(http_server: str, remote_name: str) -> str:
    return f"{http_server.rstrip('/')}/{remote_name}"


async def check_public_url(
    url: str,
    *,
    expected_size: int,
    kind: str,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 20.0,
) -> str:
    """Return the served content type, or explain why Instagram will not be able to fetch it."""
    last = ""
    for attempt in range(1, retries + 2):
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.head(url, allow_redirects=False) as response,
            ):
                status = response.status
                ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                length = response.headers.get("Content-Length")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            last = f"could not connect ({type(exc).__name__}: {exc})"
        else:
            if 300 <= status < 400:
                raise ConfigError(
                    f"HTTP_SERVER answers {url} with a redirect ({status}); Instagram needs the "
                    "file itself at that address.",
                    hint="Point HTTP_SERVER at the final (https) address serving FTP_DIRECTORY.",
                )
            if status == 200:
                if not ctype.startswith(f"{kind}/"):
                    raise ConfigError(
                        f"HTTP_SERVER serves {url} as `{ctype or 'no content type'}`, not as "
                        f"{kind}/*; Instagram will refuse it.",
                        hint="Make the web server send the right Content-Type for .jpg/.mp4 files.",
                    )
                if length is not None and length.isdigit() and int(length) != expected_size:
                    last = f"it serves {length} bytes instead of {expected_size}"
                else:
                    return ctype
            elif status in (404, 403, 401, 410):
                last = f"it answered HTTP {status}"
                if attempt > retries:
                    break
            else:
                last = f"it answered HTTP {status}"
        if attempt <= retries:
            delay = min(backoff * (2 ** (attempt - 1)), 20.0)
            log.info("HEAD %s: %s; retrying in %.1fs", url, last, delay)
            await asyncio.sleep(delay)
    raise RuntimeFailure(
        f"The uploaded file is not publicly reachable at {url}: {last}. Instagram downloads "
        "media from this URL, so it must serve the uploaded file directly.",
        hint="Check that HTTP_SERVER is the public address of FTP_DIRECTORY (the file was "
        "uploaded there), that the web server runs, and that it is reachable from the internet.",
    )
