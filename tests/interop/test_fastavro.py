"""Interoperability with an independent Avro implementation (fastavro, pinned).

fastavro writes UserEvents that our codec must read field for field, and
our codec's UserEvent and Recommendation bytes must equal fastavro's byte
for byte and read back in fastavro. Both framings; older and newer writer
schemas; cut messages. The C side runs through tests/tools/codec_tool.
"""
import datetime
import io
import json
import random
import struct

import fastavro
import pytest

from harness import BUILD, SCHEMAS, run_program

TOOL = BUILD / "tests" / "codec_tool"
TYPES = ["IMPRESSION", "VIEW", "CLICK", "ADD_TO_CART", "REMOVE_FROM_CART", "FAVORITE", "PURCHASE"]
ALPHABET = "abcXYZ019-_:/ üß€漢字🛒𝄞"
REASONS = ["taste", "intent", "covis", "trending", "cold_start", "popular"]


def schema(name):
    return fastavro.parse_schema(json.loads((SCHEMAS / name).read_text()))


USER_EVENT = schema("user_event.avsc")
RECOMMENDATION = schema("recommendation.avsc")


def random_id(rng, max_bytes=256):
    while True:
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 80)))
        if len(text.encode()) <= max_bytes:
            return text


def as_float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def random_event(rng, i):
    kind = rng.choice(TYPES)
    return {
        "event_id": f"ev-{i}-" + random_id(rng, 200),
        "user_id": random_id(rng),
        "item_id": random_id(rng),
        "type": kind,
        "ts": rng.randint(0, 1_800_000_000_000),
        "session_id": random_id(rng) if rng.random() < 0.5 else None,
        "quantity": rng.randint(1, 2**31 - 1) if kind == "PURCHASE" else None,
        "price": rng.uniform(0, 1e6) if rng.random() < 0.5 else None,
        "list_id": f"{rng.getrandbits(64):016x}" if rng.random() < 0.5 else None,
        "search": random_search(rng) if rng.random() < 0.2 else None,
    }


def random_search(rng):
    dim = rng.choice([1, 5, 64])
    content = {"model": random_id(rng), "dim": dim,
               "vector": [as_float32(rng.gauss(0, 1)) for _ in range(dim)]}
    kind = rng.choice(["text", "content", "both"])
    return {"text": random_id(rng, 500) if kind != "content" else None,
            "content": content if kind != "text" else None}


def search_token(search):
    if search is None:
        return "-"
    c = search["content"]
    return ":".join(["S", hexs(search["text"]), hexs(c["model"]) if c else "-",
                     ",".join(f"{x:.9g}" for x in c["vector"]) if c else "-"])


def parse_search_token(token):
    if token == "-":
        return None
    _, text, model, vector = token.split(":")
    return {"text": None if text == "-" else bytes.fromhex(text).decode(),
            "content": None if model == "-" else {
                "model": bytes.fromhex(model).decode(),
                "dim": len(vector.split(",")),
                "vector": [as_float32(float(x)) for x in vector.split(",")]}}


def random_rec(rng):
    return {
        "user_id": random_id(rng),
        "variant": rng.choice(["control", "treatment-b", "popularity"]),
        "model_step": rng.randint(0, 2**62),
        "generated_at": rng.randint(0, 1_800_000_000_000),
        "trigger_event_ts": rng.randint(0, 1_800_000_000_000),
        "items": [{"item_id": random_id(rng), "score": as_float32(rng.uniform(-50, 50)),
                   "reason": rng.choice([None, *REASONS]),
                   "because_item": random_id(rng) if rng.random() < 0.3 else None}
                  for _ in range(rng.randint(0, 50))],
        "list_id": f"{rng.getrandbits(64):016x}",
    }


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def read_back(data, parsed_schema):
    """fastavro's reading of our bytes, timestamp-millis turned back into ms."""
    record = fastavro.schemaless_reader(io.BytesIO(data), parsed_schema)
    for key, value in record.items():
        if isinstance(value, datetime.datetime):
            record[key] = (value - EPOCH) // datetime.timedelta(milliseconds=1)
    return record


def avro_bytes(parsed_schema, record):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema, record)
    return buf.getvalue()


def confluent(schema_id, body):
    return b"\0" + struct.pack(">I", schema_id) + body


def hexs(text):
    return text.encode().hex() if text else "-"


def tool(args, lines):
    result = run_program([TOOL, *args], stdin="".join(line + "\n" for line in lines))
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.splitlines()


def parse_event_line(line):
    parts = line.split(" ")
    assert parts[0] == "OK", line
    return {
        "event_id": bytes.fromhex(parts[1]).decode(),
        "user_id": bytes.fromhex(parts[2]).decode(),
        "item_id": bytes.fromhex(parts[3]).decode(),
        "type": parts[4],
        "ts": int(parts[5]),
        "session_id": None if parts[6] == "-" else bytes.fromhex(parts[6]).decode(),
        "quantity": None if parts[7] == "-" else int(parts[7]),
        "price": None if parts[8] == "-" else struct.unpack(">d", bytes.fromhex(parts[8]))[0],
        "list_id": None if parts[9] == "-" else bytes.fromhex(parts[9]).decode(),
        "search": parse_search_token(parts[10]) if len(parts) > 10 else None,
    }


def event_line(e):
    price = "-" if e["price"] is None else struct.pack(">d", e["price"]).hex()
    quantity = "-" if e["quantity"] is None else str(e["quantity"])
    return " ".join([hexs(e["event_id"]), hexs(e["user_id"]), hexs(e["item_id"]), e["type"],
                     str(e["ts"]), hexs(e["session_id"]) if e["session_id"] else "-",
                     quantity, price, hexs(e.get("list_id")), search_token(e.get("search"))])


def rec_line(r):
    parts = [hexs(r["user_id"]), hexs(r["variant"]), str(r["model_step"]), str(r["generated_at"]),
             str(r["trigger_event_ts"]), hexs(r.get("list_id", "")), str(len(r["items"]))]
    for item in r["items"]:
        parts += [hexs(item["item_id"]), struct.pack(">f", item["score"]).hex(),
                  hexs(item.get("reason")), hexs(item.get("because_item"))]
    return " ".join(parts)


@pytest.fixture(scope="module")
def events():
    rng = random.Random(20261125)
    return [random_event(rng, i) for i in range(400)]


@pytest.fixture(scope="module")
def recs():
    rng = random.Random(7)
    return [random_rec(rng) for _ in range(150)]


def test_fastavro_events_decode_raw(events):
    lines = tool(["--framing", "raw", "decode-events"],
                 [avro_bytes(USER_EVENT, e).hex() for e in events])
    assert [parse_event_line(line) for line in lines] == events


def test_fastavro_events_decode_confluent(events):
    lines = tool(["--framing", "confluent", "--schema", f"5={SCHEMAS / 'user_event.avsc'}",
                  "decode-events"],
                 [confluent(5, avro_bytes(USER_EVENT, e)).hex() for e in events])
    assert [parse_event_line(line) for line in lines] == events


def test_auto_framing_reads_both(events):
    mixed = [confluent(5, avro_bytes(USER_EVENT, e)) if i % 2 else avro_bytes(USER_EVENT, e)
             for i, e in enumerate(events)]
    lines = tool(["--schema", f"5={SCHEMAS / 'user_event.avsc'}", "decode-events"],
                 [m.hex() for m in mixed])
    assert [parse_event_line(line) for line in lines] == events


def test_our_events_equal_fastavro_bytes(events):
    ours = tool(["--framing", "raw", "encode-events"], [event_line(e) for e in events])
    for event, hex_bytes in zip(events, ours, strict=True):
        data = bytes.fromhex(hex_bytes)
        assert data == avro_bytes(USER_EVENT, event)
        assert read_back(data, USER_EVENT) == event


def test_our_recommendations_equal_fastavro_bytes(recs):
    ours = tool(["--framing", "raw", "encode-recs"], [rec_line(r) for r in recs])
    for rec, hex_bytes in zip(recs, ours, strict=True):
        data = bytes.fromhex(hex_bytes)
        assert data == avro_bytes(RECOMMENDATION, rec)
        assert read_back(data, RECOMMENDATION) == rec


def test_our_confluent_recommendations(recs):
    ours = tool(["--framing", "confluent", "--out-schema-id", "300", "encode-recs"],
                [rec_line(r) for r in recs[:20]])
    for rec, hex_bytes in zip(recs[:20], ours, strict=True):
        data = bytes.fromhex(hex_bytes)
        assert data[:5] == b"\0\0\0\x01\x2c"
        assert read_back(data[5:], RECOMMENDATION) == rec


def test_fastavro_recommendations_decode(recs):
    lines = tool(["--framing", "raw", "decode-recs"],
                 [avro_bytes(RECOMMENDATION, r).hex() for r in recs])
    assert lines == [rec_line(r) for r in recs]


NEWER_USER_EVENT = {
    "type": "record", "name": "UserEvent", "namespace": "streamrec",
    "fields": [
        {"name": "schema_version", "type": "int"},
        {"name": "event_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "item_id", "type": "string"},
        {"name": "type", "type": {"type": "enum", "name": "EventType",
                                  "symbols": ["RETURN"] + list(reversed(TYPES))}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "session_id", "type": ["null", "string"], "default": None},
        {"name": "quantity", "type": ["null", "int"], "default": None},
        {"name": "price", "type": ["null", "double"], "default": None},
        {"name": "list_id", "type": ["null", "string"], "default": None},
        {"name": "device", "type": ["null", "string"], "default": None},
    ],
}

OLDER_USER_EVENT = {
    "type": "record", "name": "UserEvent", "namespace": "streamrec",
    "fields": [f for f in json.loads((SCHEMAS / "user_event.avsc").read_text())["fields"]
               if f["name"] in ("event_id", "user_id", "item_id", "type", "ts")],
}


def test_newer_and_older_writers_resolve(events, tmp_path):
    (tmp_path / "new.avsc").write_text(json.dumps(NEWER_USER_EVENT))
    (tmp_path / "old.avsc").write_text(json.dumps(OLDER_USER_EVENT))
    newer = fastavro.parse_schema(NEWER_USER_EVENT)
    older = fastavro.parse_schema(OLDER_USER_EVENT)
    messages, expected = [], []
    for i, e in enumerate(events[:100]):
        if i % 2:
            messages.append(confluent(11, avro_bytes(newer, {**e, "schema_version": 2,
                                                             "device": "phone"})))
            expected.append({**e, "search": None})
        else:
            messages.append(confluent(10, avro_bytes(older, e)))
            expected.append({**e, "session_id": None, "quantity": None, "price": None,
                             "list_id": None, "search": None})
    lines = tool(["--schema", f"10={tmp_path / 'old.avsc'}", "--schema",
                  f"11={tmp_path / 'new.avsc'}", "decode-events"], [m.hex() for m in messages])
    assert [parse_event_line(line) for line in lines] == expected
    # a symbol this reader does not know is refused by name
    ret = confluent(11, avro_bytes(newer, {**events[0], "type": "RETURN", "schema_version": 2}))
    [line] = tool(["--schema", f"11={tmp_path / 'new.avsc'}", "decode-events"], [ret.hex()])
    assert line.startswith("ERR invalid_enum") and '"RETURN"' in line


def test_cut_fastavro_messages_are_truncated(events):
    lines, cuts = [], []
    for e in events[:40]:
        data = avro_bytes(USER_EVENT, e)
        for cut in list(range(1, len(data), max(1, len(data) // 7))) + [len(data) - 1]:
            # Raw framing names no writer schema: an event without a list_id,
            # cut by its last byte (list_id's null branch), is exactly version
            # 1's encoding of the same event, and reads as such
            # (test_schema_evolution.py); likewise an event without a
            # search cut by its last byte is version 2's encoding, and
            # without either, cut by two, version 1's; every other cut is
            # refused.
            if e["search"] is None and (cut == len(data) - 1 or
                                        (e["list_id"] is None and cut == len(data) - 2)):
                continue
            cuts.append(data[:cut].hex())
    lines = tool(["--framing", "raw", "decode-events"], cuts)
    assert len(lines) == len(cuts)
    for line in lines:
        assert line.startswith("ERR truncated") or line.startswith("ERR malformed"), line
        assert not line.startswith("OK")


@pytest.mark.parametrize("search, verdict", [
    ({"text": "", "content": None}, "ERR invalid_field search has neither text nor content"),
    ({"text": "", "content": {"model": "m", "dim": 1, "vector": [0.5]}}, "S:-:6d:0.5"),
    ({"text": None, "content": {"model": "", "dim": 1, "vector": [0.5]}},
     "ERR invalid_field search.content.model is empty"),
])
def test_an_empty_search_text_is_no_text(search, verdict):
    """A search whose text is "" searches for nothing: with no vector it is
    refused as a search with neither (it was accepted, and embedded or
    counted as unembedded); with a vector it searches by the vector. An
    empty model name is an invalid field (it was refused as empty_id)."""
    event = {"event_id": "e", "user_id": "u", "item_id": "", "type": "VIEW",
             "ts": 1700000000000, "session_id": None, "quantity": None, "price": None,
             "list_id": None, "search": search}
    [line] = tool(["--framing", "raw", "decode-events"], [avro_bytes(USER_EVENT, event).hex()])
    if verdict.startswith("ERR"):
        assert line.startswith(verdict), line
    else:
        assert line.split()[-1] == verdict, line
