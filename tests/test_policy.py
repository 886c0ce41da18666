"""Sharing policy (node.policy) and TLP data (node.tlp)."""

from __future__ import annotations

import copy
import json
import tomllib
from typing import Any

import pytest
import stix2

from node.policy import Decision, Policy, PolicyError, Rules
from node.tlp import (
    TLP,
    TLP2_EXTENSION_ID,
    TLP_BY_MARKING_ID,
    parse_level,
    tlp_marking_definitions,
    tlp_of,
)

# --------------------------------------------------------------------------- fixtures

TLP2 = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP1 = {
    "white": stix2.TLP_WHITE.id,
    "green": stix2.TLP_GREEN.id,
    "amber": stix2.TLP_AMBER.id,
    "red": stix2.TLP_RED.id,
}
RED_IDS = [TLP1["red"], TLP2["red"]]

US = "identity--11111111-1111-4111-8111-111111111111"
THEM = "identity--22222222-2222-4222-8222-222222222222"
STATEMENT = stix2.v21.MarkingDefinition(
    definition_type="statement", definition={"statement": "Copyright Example Org"}
)


def as_dict(stix_object: Any) -> dict:
    return json.loads(stix_object.serialize())


def indicator(*, tlp: str | None = "green", **kwargs: Any) -> dict:
    """An indicator marked with a TLP 2.0 level (or unmarked when ``tlp`` is None)."""
    if tlp is not None:
        kwargs.setdefault("object_marking_refs", [TLP2[tlp]])
    kwargs.setdefault("pattern", "[ipv4-addr:value = '198.51.100.7']")
    kwargs.setdefault("pattern_type", "stix")
    kwargs.setdefault("valid_from", "2024-01-01T00:00:00Z")
    return as_dict(stix2.v21.Indicator(allow_custom=True, **kwargs))


def malware(*, tlp: str | None = "green", **kwargs: Any) -> dict:
    if tlp is not None:
        kwargs.setdefault("object_marking_refs", [TLP2[tlp]])
    return as_dict(stix2.v21.Malware(name="BadThing", is_family=True, **kwargs))


def relationship(source: dict, target: dict | str, *, tlp: str | None = "green") -> dict:
    target_ref = target if isinstance(target, str) else target["id"]
    marks = {"object_marking_refs": [TLP2[tlp]]} if tlp else {}
    return as_dict(
        stix2.v21.Relationship(
            source_ref=source["id"], target_ref=target_ref, relationship_type="indicates", **marks
        )
    )


def report(*refs: dict | str, tlp: str = "green") -> dict:
    ids = [ref if isinstance(ref, str) else ref["id"] for ref in refs]
    return as_dict(
        stix2.v21.Report(
            name="Campaign write-up",
            published="2024-01-02T00:00:00Z",
            object_refs=ids,
            object_marking_refs=[TLP2[tlp]],
        )
    )


def identity(identity_id: str = US, *, tlp: str | None = None) -> dict:
    marks = {"object_marking_refs": [TLP2[tlp]]} if tlp else {}
    return as_dict(
        stix2.v21.Identity(
            id=identity_id, name="Example Org", identity_class="organization", **marks
        )
    )


def rules(direction: str = "egress", **table: Any) -> Rules:
    return Rules.from_config(table, direction=direction, where="test")


def egress(resolve: Any = None, **table: Any) -> Policy:
    return Policy(rules("egress", **table), resolve)


def ingress(resolve: Any = None, **table: Any) -> Policy:
    return Policy(rules("ingress", **table), resolve)


def by_id(decisions: list[Decision]) -> dict[str, Decision]:
    return {decision.object_id: decision for decision in decisions}


def assert_withheld(decision: Decision, rule: str) -> None:
    assert (decision.allowed, decision.rule) == (False, rule), decision
    assert decision.obj is None


def assert_allowed(decision: Decision, rule: str = "allowed") -> None:
    assert (decision.allowed, decision.rule) == (True, rule), decision
    assert decision.obj is not None


# --------------------------------------------------------------------------- node.tlp


class TestTlpLevels:
    @pytest.mark.parametrize(
        ("name", "level"),
        [
            ("clear", TLP.CLEAR),
            ("WHITE", TLP.CLEAR),
            ("Green", TLP.GREEN),
            ("amber", TLP.AMBER),
            ("AMBER+STRICT", TLP.AMBER_STRICT),
            ("red", TLP.RED),
        ],
    )
    def test_parse_level_is_case_insensitive_and_knows_both_versions(self, name, level):
        assert parse_level(name) is level

    @pytest.mark.parametrize("name", ["purple", "amber-strict", "", "tlp:red"])
    def test_parse_level_lists_the_accepted_names(self, name):
        with pytest.raises(ValueError, match=r"clear, white, green, amber, amber\+strict, red"):
            parse_level(name)

    def test_levels_are_ordered_and_white_is_clear(self):
        assert TLP.CLEAR < TLP.GREEN < TLP.AMBER < TLP.AMBER_STRICT < TLP.RED
        assert TLP.WHITE is TLP.CLEAR
        assert TLP.AMBER_STRICT.label == "AMBER+STRICT"
        assert TLP.AMBER_STRICT.config_name == "amber+strict"

    def test_marking_ids_of_both_versions(self):
        assert len(TLP_BY_MARKING_ID) == 9
        for name, marking_id in TLP2.items():
            assert TLP_BY_MARKING_ID[marking_id] is parse_level(name)
        for name, marking_id in TLP1.items():
            assert TLP_BY_MARKING_ID[marking_id] is parse_level(name)


class TestTlpOf:
    def test_unmarked_is_none(self):
        assert tlp_of(indicator(tlp=None)) is None

    def test_statement_marking_is_not_tlp(self):
        assert tlp_of(indicator(tlp=None, object_marking_refs=[STATEMENT.id])) is None

    @pytest.mark.parametrize(("name", "marking_id"), [*TLP1.items(), *TLP2.items()])
    def test_object_markings_of_either_version(self, name, marking_id):
        assert tlp_of({"object_marking_refs": [marking_id]}) is parse_level(name)

    def test_most_restrictive_wins(self):
        obj = {"object_marking_refs": [TLP1["green"], TLP2["amber+strict"], TLP2["clear"]]}
        assert tlp_of(obj) is TLP.AMBER_STRICT

    def test_granular_markings_count(self):
        obj = indicator(
            object_marking_refs=[TLP2["green"]],
            granular_markings=[{"marking_ref": TLP1["amber"], "selectors": ["description"]}],
            description="seen on a customer network",
        )
        assert tlp_of(obj) is TLP.AMBER

    def test_granular_language_markings_are_ignored(self):
        obj = {"granular_markings": [{"lang": "en", "selectors": ["name"]}]}
        assert tlp_of(obj) is None


class TestTlpMarkingDefinitions:
    def test_nine_definitions_that_stix2_parses(self):
        definitions = tlp_marking_definitions()
        assert len(definitions) == 9
        assert {d["id"] for d in definitions} == set(TLP_BY_MARKING_ID)
        for definition in definitions:
            parsed = stix2.parse(definition, allow_custom=True)
            assert parsed.type == "marking-definition"
            assert parsed.id == definition["id"]

    def test_tlp2_definitions_as_published(self):
        tlp2 = [d for d in tlp_marking_definitions() if d["id"] in TLP2.values()]
        assert len(tlp2) == 5
        for definition in tlp2:
            level = definition["extensions"][TLP2_EXTENSION_ID]["tlp_2_0"]
            assert definition["id"] == TLP2[level]
            assert definition["name"] == f"TLP:{level.upper()}"
            assert definition["created"] == "2022-10-01T00:00:00.000Z"
            assert definition["spec_version"] == "2.1"
            extension = definition["extensions"][TLP2_EXTENSION_ID]
            assert extension["extension_type"] == "property-extension"

    def test_tlp1_definitions_come_from_stix2(self):
        tlp1 = {d["id"]: d for d in tlp_marking_definitions() if d["id"] in TLP1.values()}
        assert tlp1[stix2.TLP_RED.id] == as_dict(stix2.TLP_RED)
        assert tlp1[stix2.TLP_WHITE.id]["definition"] == {"tlp": "white"}

    def test_every_call_returns_fresh_objects(self):
        first = tlp_marking_definitions()
        first[0]["name"] = "changed"
        first.clear()
        assert tlp_marking_definitions()[0]["name"] == "TLP:CLEAR"


# --------------------------------------------------------------------------- configuration


class TestConfiguration:
    def test_egress_defaults_are_conservative(self):
        egress_rules = Rules.from_config(None, direction="egress", where="p")
        assert egress_rules.max_tlp is TLP.GREEN
        assert egress_rules.allow_amber_strict is False
        assert egress_rules.unmarked == "withhold"
        assert egress_rules.unresolved_refs == "withhold"
        assert egress_rules.reports == "trim"
        assert egress_rules.min_confidence is None
        assert egress_rules.missing_confidence == "share"
        assert egress_rules.types_allow == egress_rules.redact == frozenset()

    def test_ingress_defaults_accept_what_the_partner_sent(self):
        ingress_rules = Rules.from_config({}, direction="ingress", where="p")
        assert ingress_rules.max_tlp is TLP.RED
        assert ingress_rules.allow_amber_strict is True
        assert ingress_rules.unmarked == "share"
        assert ingress_rules.unresolved_refs == "share"

    def test_full_toml_table(self):
        config = tomllib.loads(
            f"""
            [peers.node-b.mappings.egress]
            types_allow = ["indicator", "malware", "relationship", "report"]
            types_deny = ["identity"]
            max_tlp = "Amber+Strict"
            allow_amber_strict = true
            unmarked = "share"
            min_confidence = 60
            missing_confidence = "withhold"
            labels_require = ["shareable"]
            labels_deny = ["internal"]
            created_by_allow = ["{US}"]
            ids_deny = ["indicator--33333333-3333-4333-8333-333333333333"]
            redact = ["x_internal_note"]
            reports = "withhold"
            unresolved_refs = "share"
            """
        )
        parsed = Rules.from_config(
            config["peers"]["node-b"]["mappings"]["egress"], direction="egress", where="x"
        )
        assert parsed.types_allow == {"indicator", "malware", "relationship", "report"}
        assert parsed.max_tlp is TLP.AMBER_STRICT
        assert parsed.allow_amber_strict is True
        assert parsed.min_confidence == 60
        assert parsed.redact == {"x_internal_note"}
        assert parsed.reports == "withhold"

    def test_bad_tlp_level_names_the_key_path(self):
        with pytest.raises(PolicyError) as caught:
            Rules.from_config(
                {"max_tlp": "purple"},
                direction="egress",
                where="peers.node-b.mappings[0].egress",
            )
        message = str(caught.value)
        assert message.startswith(
            "peers.node-b.mappings[0].egress.max_tlp: 'purple' is not a TLP level ("
        )
        assert "amber+strict" in message

    def test_unknown_key_lists_the_valid_ones(self):
        with pytest.raises(PolicyError, match=r"^test\.max_tl: unknown policy key") as caught:
            rules(max_tl="amber")
        assert "max_tlp" in str(caught.value)
        assert "unmarked" in str(caught.value)

    def test_policy_error_is_a_value_error(self):
        assert issubclass(PolicyError, ValueError)

    @pytest.mark.parametrize(
        ("table", "path"),
        [
            ({"types_allow": "indicator"}, "test.types_allow:"),
            ({"types_allow": ["Indicator"]}, r"test.types_allow\[0\]:"),
            ({"types_deny": ["indicator", 3]}, r"test.types_deny\[1\]:"),
            ({"allow_amber_strict": "yes"}, "test.allow_amber_strict:"),
            ({"unmarked": "send"}, "test.unmarked:"),
            ({"min_confidence": 101}, "test.min_confidence:"),
            ({"min_confidence": -1}, "test.min_confidence:"),
            ({"min_confidence": True}, "test.min_confidence:"),
            ({"min_confidence": 50.5}, "test.min_confidence:"),
            ({"min_confidence": 10, "missing_confidence": "drop"}, "test.missing_confidence:"),
            ({"labels_require": [""]}, r"test.labels_require\[0\]:"),
            ({"created_by_allow": ["indicator--" + US[10:]]}, r"test.created_by_allow\[0\]:"),
            ({"created_by_allow": ["identity--nope"]}, r"test.created_by_allow\[0\]:"),
            ({"ids_deny": ["not-an-id"]}, r"test.ids_deny\[0\]:"),
            ({"redact": ["x_ok", "description"]}, r"test.redact\[1\]: 'description'"),
            ({"reports": "drop"}, "test.reports:"),
            ({"unresolved_refs": "maybe"}, "test.unresolved_refs:"),
            ({"max_tlp": 3}, "test.max_tlp:"),
        ],
    )
    def test_invalid_values_name_the_key(self, table, path):
        with pytest.raises(PolicyError, match=f"^{path}"):
            rules(**table)

    def test_redact_accepts_only_custom_properties(self):
        with pytest.raises(PolicyError, match="only names starting with x_"):
            rules(redact=["labels"])

    def test_contradictions_are_rejected(self):
        with pytest.raises(PolicyError, match=r"^test\.types_deny: 'malware' is also in"):
            rules(types_allow=["malware"], types_deny=["malware"])
        with pytest.raises(PolicyError, match=r"^test\.labels_deny: 'x' is also in"):
            rules(labels_require=["x"], labels_deny=["x"])
        with pytest.raises(PolicyError, match=r"^test\.allow_amber_strict: has no effect"):
            rules(allow_amber_strict=True)  # max_tlp still green
        with pytest.raises(PolicyError, match=r"^test\.missing_confidence: has no effect"):
            rules(missing_confidence="withhold")

    def test_table_must_be_a_table(self):
        with pytest.raises(PolicyError, match=r"^test: must be a table"):
            Rules.from_config(["max_tlp"], direction="egress", where="test")  # type: ignore[arg-type]

    def test_direction_is_checked(self):
        with pytest.raises(ValueError, match="direction"):
            Rules.from_config({}, direction="sideways", where="test")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- per-object rules


class TestRedNeverLeaves:
    @pytest.mark.parametrize("red", RED_IDS)
    def test_red_is_withheld_even_when_the_config_allows_everything(self, red):
        policy = egress(
            max_tlp="red",
            allow_amber_strict=True,
            unmarked="share",
            types_allow=["indicator"],
        )
        decision = policy.decide(indicator(tlp=None, object_marking_refs=[red]))
        assert_withheld(decision, "tlp:red-never-leaves")

    @pytest.mark.parametrize("red", RED_IDS)
    def test_granular_red_is_enough(self, red):
        obj = indicator(
            granular_markings=[{"marking_ref": red, "selectors": ["description"]}],
            description="victim network details",
        )
        assert_withheld(egress(max_tlp="red").decide(obj), "tlp:red-never-leaves")

    def test_red_is_checked_before_every_other_rule(self):
        obj = indicator(tlp="red")
        policy = egress(ids_deny=[obj["id"]], types_deny=["indicator"])
        assert_withheld(policy.decide(obj), "tlp:red-never-leaves")

    def test_red_is_withheld_in_batches_too(self):
        decisions = egress(max_tlp="red").apply([indicator(tlp="red")])
        assert_withheld(decisions[0], "tlp:red-never-leaves")

    def test_ingress_accepts_red_by_default(self):
        assert_allowed(ingress().decide(indicator(tlp="red")))


class TestTlpRules:
    @pytest.mark.parametrize(
        "marking", [TLP1["white"], TLP1["green"], TLP2["clear"], TLP2["green"]]
    )
    def test_clear_and_green_of_either_version_pass_by_default(self, marking):
        obj = indicator(tlp=None, object_marking_refs=[marking])
        assert_allowed(egress().decide(obj))

    @pytest.mark.parametrize("marking", [TLP1["amber"], TLP2["amber"]])
    def test_amber_of_either_version_is_above_the_default_max(self, marking):
        decision = egress().decide(indicator(tlp=None, object_marking_refs=[marking]))
        assert_withheld(decision, "tlp.max")
        assert decision.detail == "TLP:AMBER above max_tlp GREEN"

    def test_amber_passes_with_max_tlp_amber(self):
        assert_allowed(egress(max_tlp="amber").decide(indicator(tlp="amber")))

    def test_granular_amber_counts_against_max_tlp(self):
        obj = indicator(
            granular_markings=[{"marking_ref": TLP2["amber"], "selectors": ["description"]}],
            description="details",
        )
        assert_withheld(egress().decide(obj), "tlp.max")

    def test_amber_strict_is_withheld_by_default(self):
        assert_withheld(egress().decide(indicator(tlp="amber+strict")), "tlp.max")

    @pytest.mark.parametrize("max_tlp", ["amber+strict", "red"])
    def test_amber_strict_needs_the_explicit_opt_in(self, max_tlp):
        obj = indicator(tlp="amber+strict")
        assert_withheld(egress(max_tlp=max_tlp).decide(obj), "tlp.amber-strict")
        assert_allowed(egress(max_tlp=max_tlp, allow_amber_strict=True).decide(obj))

    def test_amber_strict_above_max_amber_even_when_opted_in_elsewhere(self):
        assert_withheld(egress(max_tlp="amber").decide(indicator(tlp="amber+strict")), "tlp.max")

    def test_ingress_may_refuse_amber_strict(self):
        obj = indicator(tlp="amber+strict")
        assert_allowed(ingress().decide(obj))
        assert_withheld(ingress(allow_amber_strict=False).decide(obj), "tlp.amber-strict")
        assert_withheld(ingress(max_tlp="amber").decide(obj), "tlp.max")


class TestUnmarked:
    def test_egress_withholds_unmarked_by_default(self):
        decision = egress().decide(indicator(tlp=None))
        assert_withheld(decision, "unmarked")

    def test_statement_marking_alone_counts_as_unmarked(self):
        obj = indicator(tlp=None, object_marking_refs=[STATEMENT.id])
        assert_withheld(egress().decide(obj), "unmarked")

    def test_egress_can_share_unmarked(self):
        assert_allowed(egress(unmarked="share").decide(indicator(tlp=None)))

    def test_ingress_accepts_unmarked_by_default(self):
        assert_allowed(ingress().decide(indicator(tlp=None)))

    def test_ingress_can_refuse_unmarked(self):
        assert_withheld(ingress(unmarked="withhold").decide(indicator(tlp=None)), "unmarked")

    @pytest.mark.parametrize("definition", tlp_marking_definitions(), ids=lambda d: d["id"])
    def test_tlp_marking_definitions_are_exempt(self, definition):
        assert_allowed(egress().decide(definition))

    def test_statement_marking_definitions_follow_the_normal_rules(self):
        statement = as_dict(STATEMENT)
        assert_withheld(egress().decide(statement), "unmarked")
        assert_allowed(egress(unmarked="share").decide(statement))


class TestSelectionRules:
    def test_types_allow(self):
        policy = egress(types_allow=["indicator"])
        assert_allowed(policy.decide(indicator()))
        decision = policy.decide(malware())
        assert_withheld(decision, "types.allow")
        assert "'malware'" in decision.detail

    def test_types_deny(self):
        policy = egress(types_deny=["malware"])
        assert_allowed(policy.decide(indicator()))
        assert_withheld(policy.decide(malware()), "types.deny")

    def test_ids_deny(self):
        secret, public = indicator(), indicator()
        policy = egress(ids_deny=[secret["id"]])
        assert_withheld(policy.decide(secret), "ids.deny")
        assert_allowed(policy.decide(public))

    def test_labels_require(self):
        policy = egress(labels_require=["shareable", "partner-b"])
        assert_allowed(policy.decide(indicator(labels=["partner-b", "other"])))
        assert_withheld(policy.decide(indicator(labels=["other"])), "labels.require")
        assert_withheld(policy.decide(indicator()), "labels.require")

    def test_labels_deny(self):
        policy = egress(labels_deny=["internal"])
        assert_allowed(policy.decide(indicator(labels=["shareable"])))
        assert_allowed(policy.decide(indicator()))
        decision = policy.decide(indicator(labels=["shareable", "internal"]))
        assert_withheld(decision, "labels.deny")
        assert "'internal'" in decision.detail

    def test_labels_compare_in_any_letter_case(self):
        denying = egress(labels_deny=["Internal"])
        assert_withheld(denying.decide(indicator(labels=["INTERNAL"])), "labels.deny")
        assert_withheld(denying.decide(indicator(labels=["internal"])), "labels.deny")
        requiring = egress(labels_require=["Partner-B"])
        assert_allowed(requiring.decide(indicator(labels=["partner-b"])))

    def test_created_by_allow(self):
        policy = egress(created_by_allow=[US])
        assert_allowed(policy.decide(indicator(created_by_ref=US)))
        decision = policy.decide(indicator(created_by_ref=THEM))
        assert_withheld(decision, "created_by.allow")
        assert THEM in decision.detail
        assert_withheld(policy.decide(indicator()), "created_by.allow")

    def test_min_confidence(self):
        policy = egress(min_confidence=60)
        assert_allowed(policy.decide(indicator(confidence=60)))
        assert_allowed(policy.decide(indicator(confidence=95)))
        decision = policy.decide(indicator(confidence=59))
        assert_withheld(decision, "confidence.min")
        assert decision.detail == "confidence 59 below min_confidence 60"

    def test_missing_confidence_is_shared_by_default(self):
        assert_allowed(egress(min_confidence=60).decide(indicator()))

    def test_missing_confidence_can_be_withheld(self):
        policy = egress(min_confidence=60, missing_confidence="withhold")
        assert_withheld(policy.decide(indicator()), "confidence.missing")
        assert_allowed(policy.decide(indicator(confidence=70)))

    def test_protective_rules_come_before_selective_ones(self):
        obj = indicator(tlp="amber", labels=["other"])
        assert_withheld(egress(labels_require=["shareable"]).decide(obj), "tlp.max")

    def test_object_without_id_is_invalid(self):
        assert_withheld(egress(unmarked="share").decide({"type": "indicator"}), "invalid")


class TestDecisionShape:
    def test_allowed_decision_names_the_version(self):
        obj = indicator(modified="2024-03-01T00:00:00.000Z", created="2024-02-01T00:00:00.000Z")
        decision = egress().decide(obj)
        assert decision.object_id == obj["id"]
        assert decision.version == "2024-03-01T00:00:00.000Z"
        assert decision.obj is obj  # nothing to change: no copy on the hot path

    def test_version_falls_back_to_created_then_empty(self):
        statement = as_dict(STATEMENT)
        assert egress().decide(statement).version == statement["created"]
        sco = {"type": "ipv4-addr", "id": "ipv4-addr--" + US[10:], "value": "198.51.100.7"}
        assert egress(unmarked="share").decide(sco).version == ""

    def test_rule_names_serialise_as_plain_strings(self):
        decision = egress().decide(indicator(tlp="amber"))
        assert json.dumps({"rule": decision.rule}) == '{"rule": "tlp.max"}'

    def test_decision_is_frozen(self):
        decision = egress().decide(indicator())
        with pytest.raises(AttributeError):
            decision.allowed = False  # type: ignore[misc]


class TestRedaction:
    def test_removes_only_the_named_custom_properties_and_never_mutates(self):
        obj = indicator(
            x_internal_note="analyst thinks it is X",
            x_source_ticket="T-1",
            x_public_tag="keep",
        )
        before = copy.deepcopy(obj)
        decision = egress(redact=["x_internal_note", "x_source_ticket"]).decide(obj)
        assert_allowed(decision)
        assert obj == before
        assert "x_internal_note" not in decision.obj
        assert "x_source_ticket" not in decision.obj
        assert decision.obj["x_public_tag"] == "keep"
        kept = {k: v for k, v in obj.items() if k not in ("x_internal_note", "x_source_ticket")}
        assert decision.obj == kept
        assert "redacted x_internal_note, x_source_ticket" in decision.detail

    def test_objects_without_those_properties_are_not_copied(self):
        obj = indicator()
        assert egress(redact=["x_internal_note"]).decide(obj).obj is obj

    def test_granular_markings_on_redacted_properties_are_dropped(self):
        obj = indicator(
            x_internal_note="secret-ish",
            description="public",
            granular_markings=[
                {"marking_ref": TLP2["green"], "selectors": ["x_internal_note"]},
                {"marking_ref": TLP2["clear"], "selectors": ["description", "x_internal_note"]},
            ],
        )
        before = copy.deepcopy(obj)
        decision = egress(redact=["x_internal_note"]).decide(obj)
        assert decision.obj["granular_markings"] == [
            {"marking_ref": TLP2["clear"], "selectors": ["description"]}
        ]
        assert obj == before
        stix2.parse(decision.obj, allow_custom=True)

    def test_translations_of_redacted_properties_are_removed(self):
        """A language-content's translation of a redacted property is that property in
        another language (STIX 2.1 section 7.1): it goes with the property."""
        target = indicator(x_internal_note="informant: J. Doe", description="public")
        content = {
            "type": "language-content", "spec_version": "2.1",
            "id": "language-content--b10f92ea-ffab-40e8-a54f-7d6728f85f98",
            "created": target["created"], "modified": target["modified"],
            "object_ref": target["id"], "object_modified": target["modified"],
            "contents": {"fr": {"x_internal_note": "informateur : J. Doe",
                                "description": "public (fr)"},
                         "de": {"x_internal_note": "Informant: J. Doe"}},
            "granular_markings": [{"marking_ref": TLP2["green"],
                                   "selectors": ["contents.fr.x_internal_note", "contents.de"]}],
            "object_marking_refs": [TLP2["green"]],
        }  # fmt: skip
        before = copy.deepcopy(content)
        decision = egress(redact=["x_internal_note"]).decide(content)
        assert_allowed(decision)
        assert decision.obj["contents"] == {"fr": {"description": "public (fr)"}}
        assert "granular_markings" not in decision.obj
        assert "contents.de.x_internal_note" in decision.detail
        assert content == before
        stix2.parse(decision.obj, allow_custom=True)
        only_secret = {**content, "contents": {"fr": {"x_internal_note": "informateur"}}}
        withheld = egress(redact=["x_internal_note"]).decide(only_secret)
        assert_withheld(withheld, "redact.nothing-left")

    def test_withheld_objects_are_not_redacted(self):
        obj = indicator(tlp="amber", x_internal_note="n")
        assert egress(redact=["x_internal_note"]).decide(obj).obj is None

    def test_ingress_redacts_before_storing(self):
        obj = indicator(x_partner_internal="n")
        assert "x_partner_internal" not in ingress(redact=["x_partner_internal"]).decide(obj).obj


# --------------------------------------------------------------------------- batches


class TestReferences:
    def test_relationship_to_a_withheld_object_in_the_batch(self):
        source, target = indicator(), malware(tlp="amber")
        link = relationship(source, target)
        decisions = egress().apply([source, target, link])
        assert_allowed(decisions[0])
        assert_withheld(decisions[1], "tlp.max")
        assert_withheld(decisions[2], "ref.withheld-target")
        assert f"target_ref {target['id']}" in decisions[2].detail
        assert "tlp.max" in decisions[2].detail

    def test_relationship_between_allowed_objects(self):
        source, target = indicator(), malware()
        decisions = egress().apply([relationship(source, target), source, target])
        assert all(decision.allowed for decision in decisions)

    def test_decisions_keep_input_order(self):
        objs = [indicator(), malware(tlp="amber"), indicator(tlp=None)]
        assert [d.object_id for d in egress().apply(objs)] == [obj["id"] for obj in objs]

    def test_relationship_to_a_stored_withheld_object(self):
        source, stored_target = indicator(), malware(tlp="amber")
        store = {stored_target["id"]: stored_target}
        decisions = egress(store.get).apply([source, relationship(source, stored_target)])
        assert_allowed(decisions[0])
        assert_withheld(decisions[1], "ref.withheld-target")
        assert stored_target["id"] in decisions[1].detail

    def test_relationship_to_a_stored_allowed_object(self):
        source, stored_target = indicator(), malware()
        store = {stored_target["id"]: stored_target}
        decisions = egress(store.get).apply([source, relationship(source, stored_target)])
        assert all(decision.allowed for decision in decisions)

    def test_relationship_to_an_unknown_object(self):
        source = indicator()
        missing = "malware--44444444-4444-4444-8444-444444444444"
        decisions = egress(lambda ref: None).apply([source, relationship(source, missing)])
        assert_withheld(decisions[1], "ref.unresolved")
        assert f"target_ref {missing}" in decisions[1].detail

    def test_without_a_resolver_references_outside_the_batch_are_unresolved(self):
        source = indicator()
        link = relationship(source, "malware--44444444-4444-4444-8444-444444444444")
        assert_withheld(egress().apply([source, link])[1], "ref.unresolved")

    def test_unresolved_references_may_be_shared(self):
        source = indicator()
        link = relationship(source, "malware--44444444-4444-4444-8444-444444444444")
        assert_allowed(egress(unresolved_refs="share").apply([source, link])[1])

    def test_ingress_accepts_references_to_objects_yet_to_arrive(self):
        link = relationship(indicator(), "malware--44444444-4444-4444-8444-444444444444")
        assert_allowed(ingress(lambda ref: None).apply([link])[0])

    def test_resolver_is_called_once_per_reference(self):
        target = malware()
        calls: list[str] = []

        def resolve(ref: str) -> dict | None:
            calls.append(ref)
            return target if ref == target["id"] else None

        sources = [indicator() for _ in range(3)]
        links = [relationship(source, target) for source in sources]
        decisions = egress(resolve).apply([*sources, *links])
        assert all(decision.allowed for decision in decisions)
        assert calls == [target["id"]]

    def test_sighting_of_a_withheld_object(self):
        seen = indicator(tlp="amber")
        sighting = as_dict(
            stix2.v21.Sighting(sighting_of_ref=seen["id"], object_marking_refs=[TLP2["green"]])
        )
        decisions = egress().apply([seen, sighting])
        assert_withheld(decisions[1], "ref.withheld-target")
        assert "sighting_of_ref" in decisions[1].detail

    def test_sighting_where_sighted_identity_travels_with_it(self):
        seen, place = indicator(), identity(THEM)
        sighting = as_dict(
            stix2.v21.Sighting(
                sighting_of_ref=seen["id"],
                where_sighted_refs=[place["id"]],
                object_marking_refs=[TLP2["green"]],
            )
        )
        decisions = by_id(egress().apply([seen, place, sighting]))
        assert_allowed(decisions[sighting["id"]])
        assert_allowed(decisions[place["id"]], "dependency")

    def test_sighting_where_sighted_amber_identity_is_protected(self):
        seen, victim = indicator(), identity(THEM, tlp="amber")
        sighting = as_dict(
            stix2.v21.Sighting(
                sighting_of_ref=seen["id"],
                where_sighted_refs=[victim["id"]],
                object_marking_refs=[TLP2["green"]],
            )
        )
        decisions = by_id(egress().apply([seen, victim, sighting]))
        assert_withheld(decisions[victim["id"]], "tlp.max")
        assert_withheld(decisions[sighting["id"]], "ref.withheld-target")
        assert "where_sighted_refs[0]" in decisions[sighting["id"]].detail

    def test_sighting_of_observed_data_with_withheld_observables(self):
        address = {
            "type": "ipv4-addr",
            "spec_version": "2.1",
            "id": "ipv4-addr--55555555-5555-4555-8555-555555555555",
            "value": "198.51.100.7",
            "object_marking_refs": [TLP2["amber"]],
        }
        observed = as_dict(
            stix2.v21.ObservedData(
                first_observed="2024-01-01T00:00:00Z",
                last_observed="2024-01-01T00:00:00Z",
                number_observed=1,
                object_refs=[address["id"]],
                object_marking_refs=[TLP2["green"]],
            )
        )
        seen = indicator()
        sighting = as_dict(
            stix2.v21.Sighting(
                sighting_of_ref=seen["id"],
                observed_data_refs=[observed["id"]],
                object_marking_refs=[TLP2["green"]],
            )
        )
        # Listed so that the sighting is looked at before the container it depends on.
        decisions = by_id(egress().apply([sighting, seen, observed, address]))
        assert_withheld(decisions[address["id"]], "tlp.max")
        assert_withheld(decisions[observed["id"]], "reports.empty")
        assert_withheld(decisions[sighting["id"]], "ref.withheld-target")
        assert_allowed(decisions[seen["id"]])


class TestContainers:
    def test_report_is_trimmed_by_default(self):
        shared, secret = indicator(), malware(tlp="amber")
        container = report(shared, secret)
        before = copy.deepcopy(container)
        decisions = egress().apply([container, shared, secret])
        assert_allowed(decisions[0], "reports.trim")
        assert decisions[0].obj["object_refs"] == [shared["id"]]
        assert decisions[0].detail == "object_refs trimmed: 1 of 2 withheld"
        assert container == before
        stix2.parse(decisions[0].obj)

    def test_report_is_withheld_when_configured(self):
        shared, secret = indicator(), malware(tlp="amber")
        decisions = egress(reports="withhold").apply([shared, secret, report(shared, secret)])
        assert_withheld(decisions[2], "reports.withhold")
        assert secret["id"] in decisions[2].detail

    def test_report_with_only_shared_refs_is_untouched(self):
        shared = indicator()
        container = report(shared)
        decision = egress(reports="withhold").apply([shared, container])[1]
        assert_allowed(decision)
        assert decision.obj is container

    def test_report_trimmed_to_nothing_is_withheld(self):
        secret = malware(tlp="amber")
        decisions = egress().apply([secret, report(secret)])
        assert_withheld(decisions[1], "reports.empty")

    def test_report_refs_resolved_from_the_store(self):
        stored_ok, stored_secret = indicator(), malware(tlp="amber")
        store = {obj["id"]: obj for obj in (stored_ok, stored_secret)}
        unknown = "tool--66666666-6666-4666-8666-666666666666"
        decision = egress(store.get).apply([report(stored_ok, stored_secret, unknown)])[0]
        assert_allowed(decision, "reports.trim")
        assert decision.obj["object_refs"] == [stored_ok["id"]]

    def test_report_loses_relationships_withheld_for_their_targets(self):
        source, secret = indicator(), malware(tlp="amber")
        link = relationship(source, secret)
        container = report(source, secret, link)
        decisions = by_id(egress().apply([container, link, source, secret]))
        assert_withheld(decisions[link["id"]], "ref.withheld-target")
        assert decisions[container["id"]].obj["object_refs"] == [source["id"]]

    def test_nested_containers_settle(self):
        secret = malware(tlp="amber")
        inner = report(secret)
        note = as_dict(
            stix2.v21.Note(
                content="see the inner report",
                object_refs=[inner["id"]],
                object_marking_refs=[TLP2["green"]],
            )
        )
        decisions = by_id(egress().apply([note, inner, secret]))
        assert_withheld(decisions[inner["id"]], "reports.empty")
        assert_withheld(decisions[note["id"]], "reports.empty")

    def test_a_chain_of_containers_costs_one_check_per_link(self, monkeypatch):
        """A partner can post (and another peer's egress must decide) a chain of
        reports, each listing the one before, newest first: each is checked about
        twice, not once per pass over the batch, and details stay short."""
        from node import policy

        checks = []
        check = policy._Batch._link_verdict
        monkeypatch.setattr(
            policy._Batch,
            "_link_verdict",
            lambda batch, *args: checks.append(1) or check(batch, *args),
        )
        chain = [malware(tlp="amber")]
        for _ in range(300):
            chain.append(report(chain[-1]))
        decisions = egress().apply(list(reversed(chain)))
        assert not any(decision.allowed for decision in decisions)
        assert len(checks) <= 2 * len(chain)
        assert max(len(decision.detail) for decision in decisions) < 1000

    def test_grouping_is_a_container(self):
        shared, secret = indicator(), malware(tlp="amber")
        grouping = as_dict(
            stix2.v21.Grouping(
                context="suspicious-activity",
                object_refs=[shared["id"], secret["id"]],
                object_marking_refs=[TLP2["green"]],
            )
        )
        decision = egress().apply([shared, secret, grouping])[2]
        assert decision.obj["object_refs"] == [shared["id"]]


class TestDependencies:
    def test_author_identity_travels_with_allowed_objects(self):
        author = identity(US)  # unmarked: withheld on its own by egress defaults
        shared = indicator(created_by_ref=US)
        decisions = by_id(egress().apply([author, shared]))
        assert_allowed(decisions[US], "dependency")
        assert shared["id"] in decisions[US].detail
        assert "unmarked" in decisions[US].detail

    def test_each_object_is_walked_for_references_once_per_policy(self, monkeypatch):
        """A batch is decided, its dependencies named and an object decided again by
        one Policy (as egress does): each object's properties are walked for links
        once, and what the walks found still decides (a withheld target withholds
        the relationship; the author travels as a dependency)."""
        from node import policy

        walked: list[int] = []
        walk = policy._link_refs
        monkeypatch.setattr(policy, "_link_refs", lambda obj: walked.append(id(obj)) or walk(obj))
        shared, secret = indicator(created_by_ref=US), malware(tlp="amber")
        batch = [shared, secret, relationship(shared, secret), relationship(shared, shared)]
        deciding = egress()
        decisions = deciding.apply(batch)
        assert [d.allowed for d in decisions] == [True, False, False, True]
        assert deciding.dependencies(decisions) == {US, TLP2["green"]}
        assert deciding.apply(batch) == decisions
        assert sorted(walked) == sorted(id(obj) for obj in batch)

    def test_identity_nobody_allowed_references_stays_withheld(self):
        author = identity(US)
        secret = indicator(tlp="amber", created_by_ref=US)
        decisions = by_id(egress().apply([author, secret]))
        assert_withheld(decisions[US], "unmarked")

    def test_protective_rules_beat_the_dependency_rule(self):
        author = identity(US, tlp="amber")
        decisions = by_id(egress().apply([author, indicator(created_by_ref=US)]))
        assert_withheld(decisions[US], "tlp.max")
        red_author = identity(US, tlp="red")
        decisions = by_id(egress(max_tlp="red").apply([red_author, indicator(created_by_ref=US)]))
        assert_withheld(decisions[US], "tlp:red-never-leaves")
        decisions = by_id(egress(ids_deny=[US]).apply([author, indicator(created_by_ref=US)]))
        assert_withheld(decisions[US], "ids.deny")

    def test_types_allow_does_not_block_dependencies(self):
        statement = as_dict(STATEMENT)
        shared = indicator(object_marking_refs=[TLP2["green"], STATEMENT.id], created_by_ref=US)
        policy = egress(types_allow=["indicator"])
        decisions = by_id(policy.apply([identity(US), statement, shared]))
        assert_allowed(decisions[shared["id"]])
        assert_allowed(decisions[US], "dependency")
        assert_allowed(decisions[STATEMENT.id], "dependency")

    def test_granular_marking_definitions_travel(self):
        statement = as_dict(STATEMENT)
        shared = indicator(
            description="d",
            granular_markings=[{"marking_ref": STATEMENT.id, "selectors": ["description"]}],
        )
        decisions = by_id(egress().apply([statement, shared]))
        assert_allowed(decisions[STATEMENT.id], "dependency")

    def test_dependencies_of_dependencies_travel(self):
        author = identity(US)
        author["created_by_ref"] = THEM
        parent = identity(THEM)
        decisions = by_id(egress().apply([parent, author, indicator(created_by_ref=US)]))
        assert_allowed(decisions[US], "dependency")
        assert_allowed(decisions[THEM], "dependency")

    def test_tlp_definitions_in_the_batch_pass(self):
        definitions = tlp_marking_definitions()
        decisions = egress().apply([*definitions, indicator()])
        assert all(decision.allowed for decision in decisions)

    def test_dependencies_lists_what_the_batch_lacks(self):
        policy = egress({STATEMENT.id: as_dict(STATEMENT)}.get)  # stored, not in the batch
        shared = indicator(created_by_ref=US, object_marking_refs=[TLP2["green"], STATEMENT.id])
        secret = indicator(tlp="amber", created_by_ref=THEM)
        decisions = policy.apply([shared, secret])
        assert policy.dependencies(decisions) == {US, TLP2["green"], STATEMENT.id}

    def test_a_marking_not_held_yet_does_not_withhold_for_good(self):
        """A bundle may carry its marking definitions last (MITRE's do) and be posted in
        several envelopes: what the first ones mark is judged without the definition,
        and withholding it then would lose it for good (egress decides each version
        once, behind the cursor)."""
        marked = indicator(object_marking_refs=[TLP2["green"], STATEMENT.id])
        assert_allowed(egress().apply([marked])[0])
        assert_allowed(egress({STATEMENT.id: as_dict(STATEMENT)}.get).apply([marked])[0])

    def test_a_definition_minted_to_mean_a_tlp_level_is_judged_at_that_level(self):
        """OpenCTI mints TLP definitions of its own ("TLP", "TLP:AMBER+STRICT"); so may
        anyone, with the TLP 2.0 extension: egress judges them at the level they claim,
        and what they mark is withheld with them."""
        minted = [
            ({"definition_type": "TLP", "definition": {"tlp": "TLP:AMBER+STRICT"}}, "tlp.max"),
            ({"definition_type": "TLP", "definition": {"tlp": "red"}}, "tlp:red-never-leaves"),
            ({"extensions": {TLP2_EXTENSION_ID.upper().replace("EXTENSION-DEFINITION",
                                                               "extension-definition"):
                             {"extension_type": "property-extension", "tlp_2_0": "amber"}}},
             "tlp.max"),
            ({"definition_type": "tlp", "definition": {"tlp": "no such level"}},
             "tlp:red-never-leaves"),
            # OpenCTI's own, as its connectors write them: a statement, and x_opencti_*
            ({"definition_type": "statement", "definition": {"statement": "TLP:AMBER+STRICT"},
              "x_opencti_definition_type": "TLP", "x_opencti_definition": "TLP:AMBER+STRICT"},
             "tlp.max"),
            ({"definition_type": "statement", "definition": {"statement": "tlp: red"}},
             "tlp:red-never-leaves"),
        ]  # fmt: skip
        for index, (claim, rule) in enumerate(minted):
            definition = {
                "type": "marking-definition", "spec_version": "2.1",
                "id": f"marking-definition--00000000-0000-4000-8000-00000000000{index}",
                "created": "2026-01-01T00:00:00.000Z", "name": "TLP", **claim,
            }  # fmt: skip
            marked = indicator(tlp=None, object_marking_refs=[definition["id"]])
            policy = egress(unmarked="share")
            decisions = policy.apply([definition, marked])
            assert_withheld(decisions[0], rule)
            assert_withheld(decisions[1], "ref.withheld-target")
        green = {"type": "marking-definition", "spec_version": "2.1",
                 "id": "marking-definition--00000000-0000-4000-8000-0000000000aa",
                 "created": "2026-01-01T00:00:00.000Z", "definition_type": "TLP",
                 "definition": {"tlp": "TLP:GREEN"}}  # fmt: skip
        marked = indicator(tlp=None, object_marking_refs=[green["id"]])
        assert all(d.allowed for d in egress(unmarked="share").apply([green, marked]))

    def test_dependencies_skip_what_the_batch_carries(self):
        policy = egress()
        author = identity(US)
        decisions = policy.apply([author, indicator(created_by_ref=US)])
        assert policy.dependencies(decisions) == {TLP2["green"]}
        assert policy.dependencies(iter(decisions)) == {TLP2["green"]}

    def test_dependencies_of_trimmed_reports_follow_the_trim(self):
        victim = identity("identity--77777777-7777-4777-8777-777777777777", tlp="amber")
        policy = egress({victim["id"]: victim}.get)
        shared = indicator()
        decisions = policy.apply([shared, report(shared, victim)])
        assert decisions[1].obj["object_refs"] == [shared["id"]]
        assert policy.dependencies(decisions) == {TLP2["green"]}

    def test_decide_dependency_for_fetched_objects(self):
        policy = egress()
        assert_allowed(policy.decide_dependency(identity(US), referrer="x"), "dependency")
        assert_withheld(policy.decide_dependency(identity(US, tlp="amber")), "tlp.max")
        assert_withheld(policy.decide_dependency(indicator(tlp=None)), "unmarked")
        tlp_green = next(d for d in tlp_marking_definitions() if d["id"] == TLP2["green"])
        assert_allowed(policy.decide_dependency(tlp_green))


class TestNeverMutates:
    def test_apply_leaves_every_input_unchanged(self):
        author = identity(US)
        shared = indicator(created_by_ref=US, x_internal_note="n")
        secret = malware(tlp="amber")
        objs = [author, shared, secret, relationship(shared, secret), report(shared, secret)]
        before = copy.deepcopy(objs)
        decisions = egress(redact=["x_internal_note"]).apply(objs)
        assert objs == before
        assert "x_internal_note" not in decisions[1].obj
