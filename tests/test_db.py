"""The time helpers every answer and query uses: one format out (`isoformat`), one parser in (`parse_iso`)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.core.clock import isoformat, parse_iso

NAIVE = datetime(2024, 5, 1, 12, 0, 0, 250000)


def test_isoformat_is_utc_with_a_z():
    assert isoformat(NAIVE) == "2024-05-01T12:00:00.250000Z"
    assert isoformat(NAIVE.replace(tzinfo=timezone(timedelta(hours=2)))) == "2024-05-01T10:00:00.250000Z"
    assert isoformat(NAIVE, timespec="seconds") == "2024-05-01T12:00:00Z"
    assert isoformat(None) is None


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T12:00:00.25Z", NAIVE),
    ("2024-05-01t12:00:00.25z", NAIVE),
    ("2024-05-01T14:00:00.25+02:00", NAIVE),
    ("2024-05-01T12:00:00.25", NAIVE),  # no offset: UTC
    ("2024-05-01", datetime(2024, 5, 1)),
    (" 2024-05-01T12:00:00.250000Z ", NAIVE),
    ("yesterday", None), ("2024-13-01", None), ("", None), (None, None), (5, None),
])
def test_parse_iso_reads_any_offset_as_naive_utc(text, expected):
    assert parse_iso(text) == expected


def test_the_two_round_trip():
    assert parse_iso(isoformat(NAIVE)) == NAIVE
