"""Backward- and forward-compatible evolution of the public schemas (issues 15 and 16).

Version 1 of UserEvent and Recommendation (schemas/history/*.v1.avsc, byte for
byte the files before list ids and explanations) against the current ones,
both ways, in fastavro (an independent Avro implementation) and in our codec:
  - a new reader reads old data: the added fields take their defaults;
  - an old reader reads new data: the added fields are skipped;
  - raw (unframed) messages written with version 1 still decode (the codec
    tries our earlier version when the current one finds the body cut short).
"""
import io
import json
import random

import fastavro
import pytest

from harness import SCHEMAS
from test_fastavro import (RECOMMENDATION, USER_EVENT, avro_bytes, confluent, event_line,
                           parse_event_line, random_event, random_rec, read_back, rec_line, tool)

HISTORY = SCHEMAS / "history"
OLD_USER_EVENT = fastavro.parse_schema(json.loads((HISTORY / "user_event.v1.avsc").read_text()))
OLD_RECOMMENDATION = fastavro.parse_schema(
    json.loads((HISTORY / "recommendation.v1.avsc").read_text()))
OLD_EVENT_FIELDS = ("event_id", "user_id", "item_id", "type", "ts", "session_id", "quantity",
                    "price")


def resolve(data, writer, reader):
    record = fastavro.schemaless_reader(io.BytesIO(data), writer, reader)
    for key, value in record.items():
        if hasattr(value, "timestamp"):
            record[key] = round(value.timestamp() * 1000)
    return record


@pytest.fixture(scope="module")
def events():
    rng = random.Random(16)
    return [random_event(rng, i) for i in range(200)]


@pytest.fixture(scope="module")
def recs():
    rng = random.Random(15)
    return [random_rec(rng) for _ in range(60)]


def old_event(e):
    return {k: e[k] for k in OLD_EVENT_FIELDS}


def old_rec(r):
    return {**{k: v for k, v in r.items() if k != "list_id"},
            "items": [{"item_id": i["item_id"], "score": i["score"]} for i in r["items"]]}


def test_added_fields_have_defaults_and_enum_is_unchanged():
    new_event = json.loads((SCHEMAS / "user_event.avsc").read_text())
    old = json.loads((HISTORY / "user_event.v1.avsc").read_text())
    assert [f["name"] for f in new_event["fields"][:len(old["fields"])]] == \
        [f["name"] for f in old["fields"]], "fields are only ever added at the end"
    for field in new_event["fields"][len(old["fields"]):]:
        assert "default" in field, field["name"]
    # IMPRESSION was a symbol from the start: exposures need no enum change
    # (a new symbol would break readers without an enum default, Avro C's among them)
    assert new_event["fields"][3] == old["fields"][3]
    new_rec = json.loads((SCHEMAS / "recommendation.avsc").read_text())
    items = new_rec["fields"][5]["type"]["items"]["fields"]
    assert all("default" in f for f in items[2:]) and "default" in new_rec["fields"][6]


def test_new_reader_reads_old_data_in_fastavro(events, recs):
    for e in events:
        got = resolve(avro_bytes(OLD_USER_EVENT, old_event(e)), OLD_USER_EVENT, USER_EVENT)
        assert got == {**old_event(e), "list_id": None, "search": None}
    for r in recs:
        got = resolve(avro_bytes(OLD_RECOMMENDATION, old_rec(r)), OLD_RECOMMENDATION,
                      RECOMMENDATION)
        expected = old_rec(r)
        expected["items"] = [{**i, "reason": None, "because_item": None}
                             for i in expected["items"]]
        assert got == {**expected, "list_id": ""}


def test_old_reader_reads_new_data_in_fastavro(events, recs):
    for e in events:
        assert resolve(avro_bytes(USER_EVENT, e), USER_EVENT, OLD_USER_EVENT) == old_event(e)
    for r in recs:
        assert resolve(avro_bytes(RECOMMENDATION, r), RECOMMENDATION,
                       OLD_RECOMMENDATION) == old_rec(r)


def test_our_codec_reads_old_raw_and_confluent_events(events):
    old = [avro_bytes(OLD_USER_EVENT, old_event(e)) for e in events]
    expected = [{**old_event(e), "list_id": None, "search": None} for e in events]
    lines = tool(["--framing", "raw", "decode-events"], [m.hex() for m in old])
    assert [parse_event_line(line) for line in lines] == expected
    framed = [confluent(21, m).hex() for m in old]
    lines = tool(["--schema", f"21={HISTORY / 'user_event.v1.avsc'}", "decode-events"], framed)
    assert [parse_event_line(line) for line in lines] == expected
    # new events, both framings, alongside
    lines = tool(["--framing", "raw", "decode-events"],
                 [avro_bytes(USER_EVENT, e).hex() for e in events])
    assert [parse_event_line(line) for line in lines] == events


def test_old_raw_event_cut_short_is_still_truncated(events):
    data = avro_bytes(OLD_USER_EVENT, old_event(events[0]))
    [line] = tool(["--framing", "raw", "decode-events"], [data[:-1].hex()])
    assert line.startswith("ERR truncated") or line.startswith("ERR malformed"), line


def test_our_codec_reads_old_recommendations(recs):
    old = [avro_bytes(OLD_RECOMMENDATION, old_rec(r)) for r in recs]
    lines = tool(["--framing", "raw", "decode-recs"], [m.hex() for m in old])
    assert lines == [rec_line({**old_rec(r), "list_id": ""}) for r in recs]
    lines = tool(["--schema", f"22={HISTORY / 'recommendation.v1.avsc'}", "decode-recs"],
                 [confluent(22, m).hex() for m in old])
    assert lines == [rec_line({**old_rec(r), "list_id": ""}) for r in recs]


def test_old_readers_read_our_new_output(recs, events):
    ours = tool(["--framing", "raw", "encode-recs"], [rec_line(r) for r in recs])
    for rec, hex_bytes in zip(recs, ours, strict=True):
        data = bytes.fromhex(hex_bytes)
        assert read_back(data, RECOMMENDATION) == rec
        assert resolve(data, RECOMMENDATION, OLD_RECOMMENDATION) == old_rec(rec)
    ours = tool(["--framing", "raw", "encode-events"], [event_line(e) for e in events])
    for event, hex_bytes in zip(events, ours, strict=True):
        assert resolve(bytes.fromhex(hex_bytes), USER_EVENT, OLD_USER_EVENT) == old_event(event)


def test_version_1_output_for_old_raw_readers(recs):
    """output.schema_version = 1: what readers that take version 1 as the
    writer schema of raw records (not yet upgraded) read exactly."""
    ours = tool(["--framing", "raw", "--rec-version", "1", "encode-recs"],
                [rec_line(r) for r in recs])
    for rec, hex_bytes in zip(recs, ours, strict=True):
        data = bytes.fromhex(hex_bytes)
        assert data == avro_bytes(OLD_RECOMMENDATION, old_rec(rec))
        assert read_back(data, OLD_RECOMMENDATION) == old_rec(rec)
