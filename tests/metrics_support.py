"""Reading Prometheus expositions in tests: sample values, and every series name a page can carry."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
             "summary": ("_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",),
             "stateset": ("",), "gaugehistogram": ("_bucket", "_gcount", "_gsum"), "unknown": ("",)}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of series ``name`` with exactly ``labels`` on the page ``text`` (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def series_names(text: str) -> dict[str, set[str]]:
    """Every series name the families on ``text`` declare (with or without samples yet), and the
    label names seen on each (labels of families with no sample yet are unknown: empty)."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set())
        for s in family.samples:
            names.setdefault(s.name, set()).update(s.labels)
    return names
