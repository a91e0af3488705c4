"""Shows the model layer's retry notices (429, 5xx, timeouts) in the chat spinner.

A rate-limited turn otherwise looks like a hung one. The model layer reports each retry
with an INFO record on `carrier_cli.llm.retry`; while a reply is pending this handler puts
that line next to the spinner. At the default log level those records would not be
emitted at all, so for the duration of a turn the logger is opened to INFO but kept from
propagating, so that nothing extra reaches stderr unless the operator asked for -v.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

RETRY_LOGGER = "carrier_cli.llm.retry"


class _Forward(logging.Handler):
    def __init__(self, show: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from carrier_cli.state import scrub

            self.show(scrub(record.getMessage()))
        except Exception:  # a display problem must never break the turn
            self.handleError(record)


@contextlib.contextmanager
def retry_notices(show: Callable[[str], None]) -> Iterator[None]:
    logger = logging.getLogger(RETRY_LOGGER)
    handler = _Forward(show)
    quiet = not logger.isEnabledFor(logging.INFO)
    saved = (logger.level, logger.propagate)
    if quiet:
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        if quiet:
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
