"""Counting the calls a code path makes to a function, for tests that check which path ran."""

from __future__ import annotations

import pytest


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list:
    """Replace ``owner.name`` (through ``monkeypatch``, so it is restored after the test) by a wrapper that calls the
    original and appends 1 to the returned list on every call."""
    calls: list = []
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls
