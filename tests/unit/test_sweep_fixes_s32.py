"""The sweep's per-unit resume points (s32 fixes): pure parts of ``sweep_ring`` and ``sweep._advance``."""
from __future__ import annotations

from concurrent.futures import Future

from guardrails.expiry_scopes import _h
from guardrails.sweep import _advance
from guardrails.sweep_ring import RESUME_CHARS, SweepRing, _Place, _resume_of, _Unit, next_resume


def _ids(n):
    return [{"id": f"/subscriptions/s/providers/x/r{i}"} for i in range(n)]


def _done(value):
    f = Future()
    f.set_result(value)
    return f


def test_a_place_skips_what_an_earlier_run_handled_and_decides_a_list_whole_when_that_item_is_gone():
    items = _ids(5)
    assert [b["id"] for b in _Place("type:t").items(items)] == [b["id"] for b in items]
    resumed = _Place("type:t", _h(items[2]["id"]))
    assert [b["id"] for b in resumed.items(items)] == [b["id"] for b in items[3:]]
    gone = _Place("type:t", _h("/subscriptions/s/providers/x/deleted"))
    assert [b["id"] for b in gone.items(items)] == [b["id"] for b in items]
    assert list(_Place("type:t").items([{"name": "no id"}])) == []


def test_a_place_moves_only_past_the_prefix_handled_in_full():
    place = _Place("type:t")
    ids = [b["id"] for b in _ids(4)]
    _advance(place, [(ids[0], []), (ids[1], [_done(True)]), (ids[2], [_done(False)]), (ids[3], [])])
    assert place.after == _h(ids[1])              # ids[2]'s child list was cut short: begun there again


def test_an_older_cursor_row_or_a_malformed_resume_reads_as_every_unit_from_its_start():
    assert _resume_of(None) == {}
    assert _resume_of("x") == {}
    assert _resume_of({"subscription:a": {"done": "x"}, 3: {}}) == {}
    assert _resume_of({"subscription:a": {"done": ["k", 1], "at": {"t": "h", "u": 2}}}) == {
        "subscription:a": {"done": ["k"], "at": {"t": "h"}}}
    ring = [_Unit("subscription:a", [], []), _Unit("subscription:b", [], [])]
    assert SweepRing._first({"next": "subscription:b"}, ring) == 1
    assert SweepRing._first({}, ring) == 0


def _unit(key, places):
    return _Unit(key, [lambda: None] * len(places), places)


def test_next_resume_keeps_what_unfinished_units_need_and_no_more():
    a_type, a_roles = _Place("type:x", "old"), _Place("roles")
    a_type.after, a_roles.done = "new", True
    b = _Place("type:x", "kept")
    c = _Place("type:x")
    c.after = "c1"
    order = [_unit("subscription:a", [a_type, a_roles]), _unit("subscription:b", [b]),
             _unit("subscription:c", [c])]
    kept = {"subscription:b": {"done": [], "at": {b.key: "kept"}}, "subscription:gone": {"done": [], "at": {}}}
    out = next_resume(order, began=[True, False, True], finished=[False, True, False], kept=kept, nxt=0)
    # a: begun, cut short; b: finished this run (nothing kept, its old point dropped); c: begun, cut short
    assert out == {"subscription:a": {"done": [a_roles.key], "at": {a_type.key: "new"}},
                   "subscription:c": {"done": [], "at": {c.key: "c1"}}}
    # a unit not begun this run keeps its earlier point
    out = next_resume(order, began=[False, False, False], finished=[False, False, False], kept=kept, nxt=1)
    assert out == {"subscription:b": kept["subscription:b"]}


def test_resume_points_are_bounded_the_next_runs_first_kept_first():
    places = [_Place(f"type:{i}") for i in range(2000)]
    for p in places:
        p.after = "x" * 16
    order = [_unit(f"subscription:{i}", [places[i]]) for i in range(2000)]
    out = next_resume(order, [True] * 2000, [False] * 2000, {}, nxt=5)
    assert 0 < len(out) < 2000 and "subscription:5" in out and "subscription:4" not in out
    import json
    assert len(json.dumps(out)) <= RESUME_CHARS
