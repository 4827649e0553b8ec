"""Session 34, the pure parts of two suspects: what a ``Retry-After`` header says
(``adapters.retry.retry_after_header``) and when a failed write is known to have changed nothing
(``secrets.rotation.refused_outright``, from each attempt's answer the ``BudgetedCaller`` keeps).
The end-to-end proofs are in tests/integration/test_secrets_suspected_s34.py."""

from __future__ import annotations

import pytest

from guardrails.adapters.retry import retry_after_header
from guardrails.errors import UNAUTHENTICATED, ArmError, ArmThrottled
from guardrails.secrets.rotation import refused_outright


def _error(cls, status, attempts, answers, reason=None):
    exc = cls("SET secret kv/s: refused", status=status, reason=reason)
    exc.attempts, exc.answers = attempts, answers
    return exc


# -- 5. a Retry-After that is no finite number -----------------------------------------------------
@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "Infinity", "-inf"])
def test_a_non_finite_retry_after_is_as_no_header(raw):
    """GIVEN a ``Retry-After`` ``float`` accepts but that names no time (``inf``: past any budget,
    the throttled write failed at once; ``nan``: 0.0 through ``max(0.0, nan)``, an immediate retry
    without backoff) WHEN it is read THEN it is None, as an absent header (the backoff is waited)."""
    assert retry_after_header({"Retry-After": raw}) is None


def test_control_a_finite_retry_after_is_kept():
    """Control: a number is its seconds (a negative one 0), a huge one too (the caller bounds it)."""
    assert retry_after_header({"Retry-After": "2"}) == 2.0
    assert retry_after_header({"Retry-After": "-3"}) == 0.0
    assert retry_after_header({"Retry-After": "1e300"}) == 1e300
    assert retry_after_header({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


# -- 4. a write refused on every attempt -----------------------------------------------------------
@pytest.mark.parametrize("answers", [(429, 429, 429), (429, 403), (429, 404)])
def test_a_write_refused_on_every_attempt_is_refused_outright(answers):
    """GIVEN a write whose every request was answered 429 (or 429s, then a 403 / 404 that ends the
    retries) WHEN judged THEN nothing was written: refused outright, as a lone 429."""
    exc = _error(ArmThrottled if answers[-1] == 429 else ArmError, answers[-1], len(answers), answers)
    assert refused_outright(exc) is True


def test_a_token_refused_after_throttled_attempts_is_refused_outright():
    """GIVEN a 429, then the identity got no token for the retry (nothing sent) THEN nothing written."""
    exc = _error(ArmError, None, 1, (429,), reason=UNAUTHENTICATED)
    assert refused_outright(exc) is True


@pytest.mark.parametrize("answers", [(500, 429), (None, 429), (429, None, 429), (502, 403)])
def test_control_a_5xx_or_a_lost_answer_among_the_attempts_keeps_it_unknown(answers):
    """Control: a 5xx or an attempt without a whole answer (None) may have been applied."""
    exc = _error(ArmThrottled if answers[-1] == 429 else ArmError, answers[-1], len(answers), answers)
    assert refused_outright(exc) is False


def test_control_without_each_answer_only_a_lone_request_is_judged():
    """Control: an error that does not carry each attempt's answer is judged as before: a lone
    429 refused outright, a 429 after a retry unknown."""
    once, again = ArmThrottled("429", status=429), ArmThrottled("429", status=429)
    again.attempts = 2
    assert refused_outright(once) is True and refused_outright(again) is False
