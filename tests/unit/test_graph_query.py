"""The Resource Graph query the sweep sends, and the setting that turns it on (pure)."""

import pytest

from guardrails import settings as S
from guardrails.adapters.graph import build_query
from guardrails.errors import ConfigError
from guardrails.model.resource import CATALOG, ResourceType


def test_the_query_lists_the_types_case_insensitively_with_full_properties():
    q = build_query([CATALOG["microsoft.storage/storageaccounts"], CATALOG["microsoft.keyvault/vaults"]])
    assert q == ("Resources | where type in~ ('microsoft.storage/storageaccounts', 'microsoft.keyvault/vaults') "
                 "| project id, name, type, location, kind, sku, tags, identity, properties | order by id asc")


@pytest.mark.parametrize("name", ["Microsoft.Storage/x') | take 1 //", "Microsoft.Storage", "a b/c", ""])
def test_nothing_but_a_type_name_reaches_the_query(name):
    with pytest.raises(ValueError):
        build_query([ResourceType(name, "2025-01-01", "patch")])


def test_the_lister_setting():
    assert S.Settings.from_env({}).sweep_lister == "arm"
    assert S.Settings.from_env({S.SWEEP_LISTER: " Graph "}).sweep_lister == "graph"
    with pytest.raises(ConfigError, match="GUARDRAILS_SWEEP_LISTER must be 'arm' or 'graph'"):
        S.Settings.from_env({S.SWEEP_LISTER: "kql"})
