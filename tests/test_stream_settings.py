"""StreamSettings refuses values the worker could not run with at start, naming the variable; so does
the metrics server for an address it cannot listen on."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from ratewarden.stream.settings import StreamSettings, listen_address


def test_a_short_window_that_is_not_a_multiple_of_its_hop_is_refused_naming_both_settings() -> None:
    with pytest.raises(ValidationError, match=r"RATEWARDEN_SHORT_WINDOW_S \(25\) must be a multiple of "
                                              r"RATEWARDEN_SHORT_HOP_S \(10\)"):
        StreamSettings(short_window_s=25, short_hop_s=10)
    assert StreamSettings(short_window_s=30, short_hop_s=10).short_window_s == 30


@pytest.mark.parametrize(("value", "expected"), [
    ("9108", ("127.0.0.1", 9108)), (":9108", ("127.0.0.1", 9108)), ("0.0.0.0:9108", ("0.0.0.0", 9108)),
    ("[::]:9108", ("::", 9108)),
])
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    assert listen_address(value, "RATEWARDEN_WORKER_METRICS_ADDRESS") == expected


@pytest.mark.parametrize("value", ["::9108", "host:0", "host:70000", "host:port", "a b:9108"])
def test_a_bad_metrics_address_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValidationError, match="RATEWARDEN_WORKER_METRICS_ADDRESS="):
        StreamSettings(worker_metrics_address=value)


def test_a_metrics_port_in_use_is_an_error_naming_the_setting() -> None:
    from ratewarden.stream import metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(OSError, match=f"RATEWARDEN_WORKER_METRICS_ADDRESS={address}: cannot listen there"):
            metrics.serve(address)
