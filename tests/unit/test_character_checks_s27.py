"""The character checks of ids and event fields answer a printable string without a loop over its
characters (session 27): ``str.isprintable`` is False for every character of Unicode categories C
and Z but the ASCII space, so the fast answer is the loop's answer for every code point."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from guardrails.errors import InvalidArmId, InvalidEvent
from guardrails.model.arm_id import parse_arm_id
from guardrails.model.events import has_control, parse_envelope
from tests import builders as b

STORAGE = b.rg_id() + "/providers/Microsoft.Storage/storageAccounts/stmlprod"


def test_isprintable_excludes_every_category_c_and_z_character_but_the_space():
    for i in range(sys.maxunicode + 1):
        c = chr(i)
        if c.isprintable():
            assert unicodedata.category(c)[0] != "C", hex(i)
            assert c == " " or not (c.isspace() or unicodedata.category(c)[0] == "Z"), hex(i)


@pytest.mark.parametrize("ch", ["\x00", "\x1f", "\x7f", "\x85", "\u200b", "\u200e", "\u202e", "\ufeff",
                                "\ue000", "\U000e0001", "\U0010ffff"])
def test_a_control_or_format_character_is_found_wherever_it_is(ch):
    assert has_control(f"abc{ch}def") and has_control(ch) and not has_control("abc def é 名")


@pytest.mark.parametrize("ch", [" ", "\u00a0", "\u2028", "\u3000", "\t", "\u200b", "\u202e", "%", "?", "#"])
def test_an_arm_id_with_whitespace_a_control_or_a_forbidden_character_is_refused(ch):
    rid = STORAGE + ch + "x"
    with pytest.raises(InvalidArmId) as err:
        parse_arm_id(rid)
    assert "position" in str(err.value)


def test_printable_unicode_ids_still_parse():
    rid = STORAGE.replace("/stmlprod", "/stmlprodé名")
    assert str(parse_arm_id(rid)) == rid


def test_an_event_id_with_a_format_character_is_refused():
    raw = b.write_event(STORAGE)
    raw["id"] = raw["id"] + "\u200b"
    with pytest.raises(InvalidEvent) as err:
        parse_envelope(raw)
    assert "control characters" in str(err.value)
