"""``GUARDRAILS_TABLES_ENDPOINT`` holding a connection string (a mix-up with
``GUARDRAILS_TABLES_CONNECTION``): it became every table request's host and its account key came
back whole in urllib3's parse error, logged by the check API and the Functions host. It is refused
at start-up now, without being shown (security review #2, 2026-11-25)."""

from __future__ import annotations

import pytest

from guardrails.errors import ConfigError
from guardrails.settings import TABLES_ENDPOINT, Settings

KEY = "Qx7Zk2Pm9Lw4Rt6Yv8hJ3nB5vC7xZ9qW1eR3tY5uI7oP9aS1dF3gH5jK7lZ9xC1vB3nM5qW7eR9tY1uI3o+P5aS7dF9/gH1jK3lQ=="
CONN = f"DefaultEndpointsProtocol=https;AccountName=stml;AccountKey={KEY};EndpointSuffix=core.windows.net"


@pytest.mark.parametrize("value", [CONN, f"https://stml.table.core.windows.net/?sig={KEY}",
                                   f"https://user:{KEY}@stml.table.core.windows.net"])
def test_a_tables_endpoint_that_is_not_one_is_refused_without_being_shown(value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({TABLES_ENDPOINT: value})
    text = str(err.value)
    assert KEY[:10] not in text and "stml" not in text and "not shown" in text
    assert (value == CONN) == ("GUARDRAILS_TABLES_CONNECTION instead" in text)


@pytest.mark.parametrize("value, kept", [
    ("https://stguardrails.table.core.windows.net", "https://stguardrails.table.core.windows.net"),
    ("https://stguardrails.table.core.windows.net/", "https://stguardrails.table.core.windows.net"),
    ("http://127.0.0.1:10002/devstoreaccount1", "http://127.0.0.1:10002/devstoreaccount1"),
    ("  https://st.table.core.chinacloudapi.cn ", "https://st.table.core.chinacloudapi.cn")])
def test_table_endpoints_are_accepted(value, kept):
    assert Settings.from_env({TABLES_ENDPOINT: value}).tables_endpoint == kept
