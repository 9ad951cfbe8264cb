"""Keyset cursors: one codec and one 400 (`invalid_cursor`) for every list endpoint."""
from __future__ import annotations

import re
from datetime import datetime

import pytest

from app.core.paging import InvalidCursor, decode_cursor, encode_cursor, matching, moment, row_id

ID = re.compile(r"[a-z0-9-]{1,64}")
WHEN = datetime(2026, 11, 22, 6, 18, 45, 933696)


def test_a_cursor_round_trips_its_key_and_is_url_safe():
    cursor = encode_cursor(WHEN, "chat-1")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert decode_cursor(cursor, moment, matching(ID)) == (WHEN, "chat-1")
    assert decode_cursor(encode_cursor(WHEN.replace(microsecond=0), "x"), moment, matching(ID))[0] == \
        WHEN.replace(microsecond=0)
    assert decode_cursor(encode_cursor(42), row_id) == (42,)


@pytest.mark.parametrize("cursor, readers", [
    ("nonsense", (moment, matching(ID))),
    ("@@@", (row_id,)),
    (encode_cursor(WHEN, "Not An Id!"), (moment, matching(ID))),  # an id that breaks the rule
    (encode_cursor("yesterday", "chat-1"), (moment, matching(ID))),
    (encode_cursor("2026-11-22T06:18:45+02:00", "chat-1"), (moment, matching(ID))),  # not naive UTC
    (encode_cursor(WHEN), (moment, matching(ID))),  # a part missing
    (encode_cursor(-1), (row_id,)),
    (encode_cursor("1|2"), (row_id,)),
    ("2", (row_id,)),  # a bare number is not a cursor
])
def test_anything_else_is_invalid_cursor(cursor, readers):
    with pytest.raises(InvalidCursor) as raised:
        decode_cursor(cursor, *readers)
    assert raised.value.status == 400 and raised.value.code == "invalid_cursor"
    assert raised.value.details["param"] == "cursor"


@pytest.mark.parametrize("path", ["/chat/history", "/tasks", "/gists/local"])
@pytest.mark.parametrize("cursor", ["zzz", "bm9uc2Vuc2U", "MjAyNi0xMS0yMlQwNjoxODo0NS45MzM2OTZ8Li4vLi4"])
def test_every_list_endpoint_answers_a_bad_cursor_the_same_way(client, path, cursor):
    response = client.get(f"{path}?cursor={cursor}")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_cursor"
    assert "cursor" in response.get_json()["error"]["message"]
