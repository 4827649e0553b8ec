"""What the expiry timer keeps of a scope between runs, and how far its window may move (no I/O).

  - ``Expired``: one expired exemption (its kind, policy, types), keyed by ``kind|policy|scope``;
    those of a window (``expired_between``)
  - the scope row's entries (``scope_entry`` / ``from_entry``, their ``attempts``), and the
    ``done`` marks of scopes finished while their expiry still holds the window (``_done_marks``)
  - the resume cursor of a scope the time budget cut short (``resume_of``, ``_Progress``, ``_h``)
  - how far the window moves after a run (``_handled``, ``next_last_run``)

The run that uses them, and why each exists, is ``guardrails.expiry``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator, Sequence

from .model.policy import Exemption


@dataclass(frozen=True)
class Expired:
    kind: str                       # "resource" | "role"
    policy: str                     # id@version
    resource_types: tuple[str, ...]  # resource policies: the selector's types
    exemption: Exemption

    @property
    def key(self) -> str:
        return _key(self.kind, self.policy, self.exemption.scope)


def _key(kind: str, policy: str, scope: str) -> str:
    return f"{kind}|{policy}|{scope.rstrip('/')}".lower()


def expired_between(compiled, since: datetime, until: datetime) -> list[Expired]:
    """Exemptions of the policies in force whose expiry lies in ``(since, until]``, earliest
    first. Pure."""
    out: list[Expired] = []
    for p in compiled.policies:
        if p.mode in ("off", "shadow"):
            continue
        for ex in p.exemptions:
            if ex.expires is not None and since < ex.expires <= until:
                out.append(Expired("resource", p.ref, tuple(p.selector.resource_types), ex))
    for cp in compiled.role_policies:
        for ex in cp.policy.exemptions:
            if ex.expires is not None and since < ex.expires <= until:
                out.append(Expired("role", cp.ref, (), ex))
    return sorted(out, key=lambda e: e.exemption.expires)


def scope_entry(item: Expired, attempts: int, reason: str, resume: dict | None = None) -> dict:
    """A failed scope as the timer state keeps it (what a later run needs to list it again, and
    for a scope the budget cut short, where to go on: ``resume``)."""
    entry = {"kind": item.kind, "policy": item.policy, "scope": item.exemption.scope,
             "types": list(item.resource_types), "attempts": attempts, "reason": reason[:40]}
    if resume is not None:
        entry["resume"] = resume
    return entry


def resume_of(entry) -> dict | None:
    """The cursor a kept scope entry resumes from (None: from its start, also for anything
    malformed: deciding again is safe, skipping is not)."""
    r = entry.get("resume") if isinstance(entry, dict) else None
    if not isinstance(r, dict):
        return None
    n, key, after = r.get("list"), r.get("in"), r.get("after")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or not isinstance(key, str) or not isinstance(after, str):
        return None
    return {"list": n, "in": key, "after": after}


def _h(text: str) -> str:
    """A short, case-insensitive fingerprint of an ARM id or list identity (the cursor stays small:
    up to ``MAX_RETRY`` scopes share one table property)."""
    return hashlib.sha256(text.lower().rstrip("/").encode("utf-8")).hexdigest()[:16]


class _Progress:
    """Where one scope's decisions stand, in the order its lists are listed (deterministic: the
    subscriptions, then the policy's types; or the leaf lists of a parent resource, depth first).

    ``resume`` is where an earlier attempt stopped; ``at`` is where this one stands (the last item
    handled, or the start of the list after one finished: ``in`` and ``after`` empty), which is
    what the scope row keeps if the budget cuts this attempt short."""

    def __init__(self, resume: dict | None) -> None:
        self.resume = resume
        self.n = -1                      # ordinal of the current decision list
        self.at = resume                 # until this attempt gets further: where the last one stopped
        self.frozen = False              # a list failed: go on from before it next time

    def freeze(self) -> None:
        self.frozen = True

    def items(self, key: str, bodies: Iterable[dict]) -> Iterator[dict]:
        """The items of the next decision list (``key``: its identity) that are still to decide."""
        self.n += 1
        n, khash, r = self.n, _h(key), self.resume
        if r is not None and n < r["list"]:
            return                       # decided in full by an earlier attempt: not even listed
        after = r["after"] if r is not None and n == r["list"] and r["in"] == khash else None
        held: list[dict] = []            # skipped as decided, until the last id decided is seen
        for body in bodies:
            if after is not None:
                if _h(body["id"]) == after:
                    after = None         # everything past it is new
                else:
                    held.append(body)
                continue
            yield body
            self._moved(n, khash, body)  # only once the caller asks for more: ``body`` was handled
        if after is not None:            # the last id decided is gone (or the order changed): decide them
            for body in held:
                yield body
                self._moved(n, khash, body)
        if not self.frozen:              # this list is done with: a next attempt starts at the next one
            self.at = {"list": n + 1, "in": "", "after": ""}

    def _moved(self, n: int, khash: str, body: dict) -> None:
        if not self.frozen:
            self.at = {"list": n, "in": khash, "after": _h(body["id"])}


def from_entry(entry) -> Expired | None:
    """The ``Expired`` a kept scope entry stands for; None for anything malformed."""
    if not isinstance(entry, dict) or entry.get("kind") not in ("resource", "role"):
        return None
    scope, policy, types = entry.get("scope"), entry.get("policy"), entry.get("types") or []
    if not isinstance(scope, str) or not scope or not isinstance(policy, str) or not isinstance(types, list):
        return None
    return Expired(entry["kind"], policy, tuple(str(t) for t in types),
                   Exemption(scope, "expired exemption, list retried", "guardrails"))


def next_last_run(handled: Sequence[datetime], pending: Sequence[datetime], now: datetime) -> datetime | None:
    """How far the window may move after a run: ``now`` when nothing of it is pending, else the
    latest expiry handled in full that is earlier than every expiry still pending (None: not at
    all; the next run repeats the window). Pure."""
    if not pending:
        return now
    first = min(pending)
    done = [t for t in handled if t < first]
    return max(done) if done else None


def _handled(items: Sequence[Expired], finished: set[str]) -> list[datetime]:
    """The expiries of the window's first items (earliest first) whose scopes are done with: the
    window may move past them, and past nothing after the first one that is not (``next_last_run``).
    A scope cut short and kept to go on (``resume``) is not done: the window stays before it."""
    out: list[datetime] = []
    for item in items:
        if item.key not in finished:
            break
        out.append(item.exemption.expires)
    return out


ROW_CHARS = 30000      # what a timer state that does not say (``retry_chars``) keeps of a row in full


def _is_mark(entry) -> bool:
    """A scope row entry that marks scopes finished (``done``), not a scope to list again."""
    return isinstance(entry, dict) and isinstance(entry.get("done"), str)


def _done_of(entries: Iterable) -> set[tuple[str, str]]:
    """(``_h`` of the key, expiry) of every scope the row marks ``done``: the compact marks
    (``{"done": expiry, "keys": [hash, …]}``) and those a row written before them holds (a whole
    scope entry with ``done``)."""
    out: set[tuple[str, str]] = set()
    for entry in entries:
        if not _is_mark(entry):
            continue
        keys = entry.get("keys")
        if isinstance(keys, list):
            out |= {(k, entry["done"]) for k in keys if isinstance(k, str)}
        elif (item := from_entry(entry)) is not None:
            out.add((_h(item.key), entry["done"]))
    return out


def _done_marks(items: Sequence[Expired], finished: set[str], kept: Sequence[dict], start: datetime) -> list[dict]:
    """The scopes of the window finished (or given up) whose expiry the next window still holds
    (``start``: where it will begin): an expiry shared with one still pending, or one behind a scope
    kept to go on. Marked ``done`` in the scope row, so the next run does not list them again from
    their first resource (a large scope would never end); dropped once the window is past them.
    Compact (a 16-character hash of the key per scope, one entry per expiry, earliest first): some
    ten thousand fit the row, where whole entries overflowed one property at about a hundred."""
    kept_keys = {_key(str(e.get("kind")), str(e.get("policy")), str(e.get("scope"))) for e in kept}
    out: dict[str, dict] = {}
    marked: set[tuple[str, str]] = set()
    for item in items:
        if item.key in finished and item.key not in kept_keys and item.exemption.expires > start:
            when = item.exemption.expires.isoformat()
            if (h := _h(item.key), when) not in marked:
                marked.add((h, when))
                out.setdefault(when, {"done": when, "keys": []})["keys"].append(h)
    return list(out.values())


def fit_marks(kept: Sequence[dict], marks: Sequence[dict], limit: int) -> tuple[list[dict], int]:
    """The marks (earliest expiry first) that fit the row beside the kept scopes within ``limit``
    JSON characters, and how many scopes' marks did not (0: none lost). Pure."""
    size = len(json.dumps(list(kept), sort_keys=True))
    out: list[dict] = []
    lost = 0
    for mark in marks:
        room = limit - size - len(json.dumps({"done": mark["done"], "keys": []}, sort_keys=True)) - 2
        n = 0 if lost else min(len(mark["keys"]), max(0, room // 20))      # each key: '"<16>", '
        if n:
            part = {"done": mark["done"], "keys": mark["keys"][:n]}
            out.append(part)
            size += len(json.dumps(part, sort_keys=True)) + 2
        lost += len(mark["keys"]) - n
    return out, lost


def _attempts(entry: dict) -> int:
    """The attempts a kept entry counts (0 for anything that is not a number)."""
    n = entry.get("attempts")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0
