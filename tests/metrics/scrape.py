"""Reading an exposition the way Prometheus does: prometheus_client's own text parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def families(text: str | bytes) -> dict[str, Any]:
    """Family name (without _total for counters) -> the parsed family."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(parsed: dict[str, Any], sample: str, **labels: str) -> float:
    """The value of the one sample named `sample` whose labels include `labels`; 0 when
    there is none (a labelled counter has no sample before its first increment)."""
    found = [
        s.value
        for family in parsed.values()
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, f"{sample}{labels} matches {len(found)} samples"
    return float(found[0]) if found else 0.0


def label_sets(parsed: dict[str, Any], sample: str) -> list[dict[str, str]]:
    return [dict(s.labels) for f in parsed.values() for s in f.samples if s.name == sample]


# Every series Carrier exposes and its Prometheus type: what a scrape must show.
SERIES_TYPES = {
    "carrier_turns": "counter",
    "carrier_turn_duration_seconds": "histogram",
    "carrier_model_calls": "counter",
    "carrier_model_tokens": "counter",
    "carrier_model_cost_usd": "counter",
    "carrier_model_call_duration_seconds": "histogram",
    "carrier_memory_search_duration_seconds": "histogram",
    "carrier_discord_gateway_reconnects": "counter",
    "carrier_discord_send_retries": "counter",
    "carrier_instagram_posts": "counter",
    "carrier_discord_queued_messages": "gauge",
    "carrier_usage_queue_depth": "gauge",
}
