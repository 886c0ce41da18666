"""The one check for unknown keys in operator-written TOML (node.tomlreader) and its users."""

from __future__ import annotations

import pytest

from node.collection_files import load_collection_files
from node.config import ConfigError
from node.policy import PolicyError, Rules
from node.tomlreader import first_unknown_key


def test_known_keys_pass():
    assert first_unknown_key({"port": 1, "host": "h"}, {"host", "port"}) is None


def test_the_first_unknown_key_in_file_order_is_reported_with_the_closest_valid_one():
    unknown = first_unknown_key({"host": "h", "prot": 1, "aaa": 2}, {"port", "host"})
    assert unknown is not None
    assert (unknown.key, unknown.suggestion) == ("prot", "port")
    assert unknown.hint == " (did you mean 'port'?)"
    assert unknown.listing == "valid keys: host, port"


def test_no_suggestion_when_nothing_is_close():
    unknown = first_unknown_key({"zzzzzz": 1}, {"port", "host"})
    assert unknown is not None and unknown.suggestion is None and unknown.hint == ""


def test_a_collection_file_with_a_misspelt_key_names_file_key_and_suggestion(tmp_path):
    path = tmp_path / "alpha.toml"
    path.write_text(
        'id = "6f1f0a9a-1111-4c3e-9a41-000000000001"\ntitle = "Alpha"\ndescripton = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_collection_files(tmp_path)
    message = str(caught.value)
    assert str(path) in message and "unknown key 'descripton'" in message
    assert "(did you mean 'description'?)" in message and "valid keys: alias," in message


def test_a_policy_reports_its_first_misspelt_key_in_file_order_with_a_suggestion():
    with pytest.raises(PolicyError) as caught:
        Rules.from_config(
            {"types_dney": ["malware"], "max_tl": "amber"}, direction="egress", where="p"
        )
    message = str(caught.value)
    assert message.startswith("p.types_dney: unknown policy key (did you mean 'types_deny'?)")
    assert "valid keys: " in message and "max_tlp" in message
