"""Property tests (hypothesis): ids, filenames, message lists, data URIs, cursors and model names hold their
rules for any input, and the app answers any such input with a 2xx or a JSON 4xx, never a 500.

Each test is bounded (`max_examples`, `deadline`) so the file runs in seconds; `HYPOTHESIS_PROFILE=long`
runs many more examples (see docs/reliability.md).
"""
from __future__ import annotations

import base64
import os
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app.conversations.schemas import CHAT_ID_PATTERN, check_chat_id
from app.core.http import schema_instance
from app.core.logs import escape_control
from app.core.paging import InvalidCursor, decode_cursor, encode_cursor, matching, moment, row_id
from app.core.schemas import decode_data_uri
from app.gists.schemas import BIDI_CONTROLS, check_filename
from app.llm.responses import header_value
from app.llm.schemas import MODEL_NAME, ChatMessagesSchema, check_model_name
from tests.conftest import NO_HEALTH_MEMORY, base_config, provider_config

settings.register_profile("default", max_examples=100, deadline=timedelta(seconds=1))
settings.register_profile("long", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
THROUGH_THE_APP = settings(max_examples=40, deadline=timedelta(seconds=3),
                           suppress_health_check=[HealthCheck.too_slow])

ID_CHARS = "abcXYZ019-_"
any_text = st.text(st.characters(exclude_categories=()), max_size=80)  # lone surrogates too
awkward_text = st.one_of(any_text, st.text(alphabet=ID_CHARS + "\n\r\t /\\.\u202e\u0101", max_size=70))


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[object]:
    from app import create_app
    from app.core.db import migrate
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI() as fake:
        app = create_app(base_config(tmp_path_factory.mktemp("properties"),
                                     **NO_HEALTH_MEMORY, **provider_config(openai=fake)))
        migrate(app.extensions["database"])
        yield app.test_client()


# -- ids ---------------------------------------------------------------------------------------------

@given(awkward_text)
def test_a_chat_id_is_accepted_exactly_when_it_follows_the_rule(value):
    follows = 1 <= len(value) <= 64 and all(ch in "-_" or ch.isascii() and ch.isalnum() for ch in value)
    try:
        check_chat_id(value)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == follows


@THROUGH_THE_APP
@given(awkward_text)
def test_any_chat_id_is_a_clear_answer(client, value):
    response = client.post("/chat", json={"message": "hi", "chat_id": value})
    assert response.status_code == (200 if CHAT_ID_PATTERN.fullmatch(value) else 400), response.json
    if response.status_code == 200:
        assert response.json["chat_id"] == value


# -- filenames ---------------------------------------------------------------------------------------

@given(st.one_of(any_text, st.sampled_from([".", "..", ".git", "a\\b", "a/b", "x\u202ey", " "])))
def test_an_accepted_gist_filename_is_safe(name):
    try:
        check_filename(name)
    except ValidationError:
        return
    assert 0 < len(name) <= 255 and name.strip() and name not in (".", "..", ".git")
    assert not any(ch in "/\\" or ch in BIDI_CONTROLS or unicodedata.category(ch) == "Cc" for ch in name)


# -- message lists ------------------------------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4),
                           max_leaves=20)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", ""]),
                                           "content": st.one_of(st.text(max_size=30), json_values)}), max_size=5)


@given(st.one_of(messages, json_values))
def test_a_message_list_loads_to_neutral_messages_or_a_validation_error(value):
    try:
        loaded = schema_instance(ChatMessagesSchema).load({"messages": value})
    except ValidationError:
        return
    assert loaded["messages"]
    for message in loaded["messages"]:
        assert message["role"] in ("system", "user", "assistant")
        assert isinstance(message["content"], str) or all(part["type"] in ("text", "image")
                                                           for part in message["content"])


@THROUGH_THE_APP
@given(st.one_of(messages, json_values))
def test_any_message_list_is_a_clear_answer(client, value):
    response = client.post("/chat", json={"messages": value})
    assert response.status_code in (200, 400), response.json
    assert response.is_json


# -- data URIs ----------------------------------------------------------------------------------------

media_types = st.from_regex(r"[a-z]{1,10}/[a-z0-9.+-]{1,12}", fullmatch=True)


@given(media_types, st.binary(max_size=200))
def test_a_base64_data_uri_decodes_to_what_was_encoded(media_type, data):
    uri = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
    assert decode_data_uri(uri, base64_only=True) == (media_type, data)


@given(st.binary(max_size=200))
def test_a_percent_encoded_data_uri_decodes_to_its_bytes(data):
    assert decode_data_uri("data:," + quote(data, safe="")) == ("text/plain", data)


@given(st.one_of(any_text, st.text(alphabet="data:;,base64=/+%abc", max_size=40)))
def test_any_text_is_a_data_uri_or_a_value_error(text):
    try:
        media_type, data = decode_data_uri(text)
    except ValueError:
        return
    assert "/" in media_type and isinstance(data, bytes)


# -- cursors ------------------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1))


@given(moments, st.integers(min_value=1, max_value=10**17))
def test_a_cursor_gives_back_its_key(when, number):
    assert decode_cursor(encode_cursor(when, number), moment, row_id) == (when, number)


@given(moments, st.from_regex(CHAT_ID_PATTERN, fullmatch=True))
def test_a_chat_list_cursor_gives_back_its_key(when, chat_id):
    assert decode_cursor(encode_cursor(when, chat_id), moment, matching(CHAT_ID_PATTERN)) == (when, chat_id)


@given(st.one_of(any_text, st.text(alphabet="AZaz09-_=|", max_size=60)))
def test_any_other_cursor_is_invalid_or_a_key(text):
    try:
        when, chat_id = decode_cursor(text, moment, matching(CHAT_ID_PATTERN))
    except InvalidCursor:
        return
    assert when.tzinfo is None and CHAT_ID_PATTERN.fullmatch(chat_id)


@THROUGH_THE_APP
@given(st.text(alphabet="AZaz09-_=|%\n", min_size=1, max_size=60))
def test_any_cursor_is_a_clear_answer(client, text):
    response = client.get("/chat/history", query_string={"cursor": text})
    assert response.status_code in (200, 400), response.json


# -- model names --------------------------------------------------------------------------------------

@given(st.one_of(awkward_text, st.from_regex(MODEL_NAME, fullmatch=True)))
def test_an_accepted_model_name_is_safe_in_headers_logs_and_labels(name):
    try:
        check_model_name(name)
    except ValidationError:
        assert not MODEL_NAME.fullmatch(name)
        return
    assert name.isascii() and name.isprintable() and " " not in name and 0 < len(name) <= 200


@given(any_text)
def test_any_model_name_becomes_a_valid_header_value_that_reads_back(name):
    value = header_value(name)
    assert value.isascii() and value.isprintable()
    assert unquote(value, errors="surrogatepass") == name


@given(any_text)
def test_an_escaped_log_argument_is_one_printable_line(text):
    escaped = escape_control(text)
    assert escaped.isprintable()
    assert escaped == text or "\\" in escaped


@THROUGH_THE_APP
@given(awkward_text)
def test_any_model_name_on_the_openai_api_is_a_clear_answer(client, name):
    response = client.post("/v1/chat/completions", json={"model": name, "messages": [{"role": "user",
                                                                                       "content": "hi"}]})
    assert response.status_code in (200, 400, 404, 503), response.json
    if response.status_code == 503:  # a model of a known vendor whose key is not set (gemini-..., claude-...)
        assert response.json["error"]["code"] == "not_configured", response.json
    if response.status_code == 200:
        response.headers["X-Model"].encode("latin-1")
