from __future__ import annotations

import logging

import pytest

from carrier_cli.clients.terminal.retry_notice import RETRY_LOGGER, retry_notices


def test_retry_records_reach_the_spinner_but_not_stderr(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger(RETRY_LOGGER)
    logger.setLevel(logging.WARNING)
    shown: list[str] = []
    with caplog.at_level(logging.WARNING), retry_notices(shown.append):
        logger.info("OpenAI: rate limited (429); retry %d/%d in %.2f s", 1, 3, 0.5)
    assert shown == ["OpenAI: rate limited (429); retry 1/3 in 0.50 s"]
    assert not [r for r in caplog.records if r.name == RETRY_LOGGER]
    assert logger.level == logging.WARNING and logger.propagate and not logger.handlers
    logger.info("after the turn")
    assert len(shown) == 1
    logger.setLevel(logging.NOTSET)
