"""``ViolationRecord.to_dict`` and ``Actor.to_dict`` are written out (not ``dataclasses.asdict``):
they must keep every field, in field order, scrub what a record holds and share nothing with it."""

from __future__ import annotations

from dataclasses import asdict, fields

from guardrails.model.decision import Actor, ViolationRecord


def test_every_field_in_field_order_as_asdict_gave_it():
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    rec = ViolationRecord(policy="p@1", rule="r", property="properties.x", outcome="violation", message="m",
                          before={"keep": "Enabled", "tok": token, "list": [token, 1, None]}, after=["Disabled"])
    d = rec.to_dict()
    assert list(d) == [f.name for f in fields(ViolationRecord)]
    assert token not in repr(d)
    assert d["before"]["keep"] == "Enabled" and d["before"]["list"][1:] == [1, None]
    plain = ViolationRecord(policy="p@1", rule="r", property="x", before={"a": ["b"]}, after=None, outcome="dry_run")
    assert plain.to_dict() == asdict(plain)
    actor = Actor(object_id="o", app_id=None, upn="u@contoso.com")
    assert actor.to_dict() == asdict(actor) and list(actor.to_dict()) == [f.name for f in fields(Actor)]


def test_the_dict_shares_nothing_with_the_record():
    rec = ViolationRecord(policy="p@1", rule="r", property="x", before={"rules": [{"ip": "1.2.3.4"}]},
                          after={"rules": []}, outcome="remediated")
    d = rec.to_dict()
    d["before"]["rules"][0]["ip"] = "changed"
    d["after"]["rules"].append("x")
    assert rec.before == {"rules": [{"ip": "1.2.3.4"}]} and rec.after == {"rules": []}
