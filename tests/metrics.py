"""Reading what an app's /metrics says, for tests."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def responses_counted(http: Any) -> dict[tuple[str, str], float]:
    """stork_http_responses_total by (route, code), read from a Flask test client's /metrics."""
    text = http.get("/metrics").get_data(as_text=True)
    return {
        (sample.labels["route"], sample.labels["code"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "stork_http_responses_total"
    }
