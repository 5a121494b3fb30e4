"""ItemEvent's content fields (title, description, content vector): backward-
and forward-compatible evolution, in fastavro and in our codec.

Version 1 (schemas/history/item_event.v1.avsc, byte for byte the file before
content vectors) against the current one, both ways:
  - a new reader reads old data: the added fields take their defaults (null);
  - an old reader reads new data: the added fields are skipped;
  - our codec reads fastavro's new records field for field, old raw records
    (it tries the earlier version), old Confluent-framed ones (by schema id),
    and refuses a content vector that breaks its own contract (dimension
    against length, non-finite numbers) naming the field.
"""
import io
import json
import math
import random

import fastavro
import pytest

from harness import SCHEMAS
from test_fastavro import as_float32, confluent, random_id, tool

HISTORY = SCHEMAS / "history"
NEW = fastavro.parse_schema(json.loads((SCHEMAS / "item_event.avsc").read_text()))
OLD = fastavro.parse_schema(json.loads((HISTORY / "item_event.v1.avsc").read_text()))
OLD_FIELDS = ("item_id", "category", "price", "in_stock", "ts")


def avro(schema, record):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def resolve(data, writer, reader):
    record = fastavro.schemaless_reader(io.BytesIO(data), writer, reader)
    if hasattr(record["ts"], "timestamp"):
        record["ts"] = round(record["ts"].timestamp() * 1000)
    return record


def random_item(rng, i):
    dim = rng.choice([1, 3, 16, 384])
    return {"item_id": random_id(rng), "category": rng.choice([None, random_id(rng)]),
            "price": rng.choice([None, 9.5]), "in_stock": rng.random() < 0.8,
            "ts": 1700000000000 + i,
            "title": rng.choice([None, random_id(rng, 1000)]),
            "description": rng.choice([None, random_id(rng, 4000)]),
            "content": rng.choice([None, {"model": random_id(rng), "dim": dim,
                                          "vector": [as_float32(rng.gauss(0, 1))
                                                     for _ in range(dim)]}])}


@pytest.fixture(scope="module")
def items():
    rng = random.Random(48)
    return [random_item(rng, i) for i in range(120)]


def old_item(item):
    return {k: item[k] for k in OLD_FIELDS}


def hexstr(text):
    return text.encode().hex() if text else "-"


def expected_line(item):
    c = item["content"]
    vector = ",".join(f"{x:.9g}" for x in c["vector"]) if c else "-"
    return " ".join(["OK", hexstr(item["item_id"]), hexstr(item["category"]),
                     hexstr(item["title"]), hexstr(item["description"]),
                     hexstr(c["model"]) if c else "-", str(c["dim"]) if c else "0", vector])


def test_fields_are_only_added_at_the_end_with_defaults():
    new = json.loads((SCHEMAS / "item_event.avsc").read_text())
    old = json.loads((HISTORY / "item_event.v1.avsc").read_text())
    assert new["fields"][:len(old["fields"])] == old["fields"]
    for field in new["fields"][len(old["fields"]):]:
        assert field.get("default", "missing") is None, field["name"]


def test_new_reader_reads_old_data_and_old_reader_new_data(items):
    for item in items:
        got = resolve(avro(OLD, old_item(item)), OLD, NEW)
        assert got == {**old_item(item), "title": None, "description": None, "content": None}
        assert resolve(avro(NEW, item), NEW, OLD) == old_item(item)


def test_our_codec_reads_new_and_old_items(items):
    lines = tool(["--framing", "raw", "decode-items"], [avro(NEW, i).hex() for i in items])
    assert lines == [expected_line(i) for i in items]
    none = {"title": None, "description": None, "content": None}
    expected = [expected_line({**old_item(i), **none}) for i in items]
    lines = tool(["--framing", "raw", "decode-items"], [avro(OLD, old_item(i)).hex() for i in items])
    assert lines == expected
    lines = tool(["--schema", f"31={HISTORY / 'item_event.v1.avsc'}", "decode-items"],
                 [confluent(31, avro(OLD, old_item(i))).hex() for i in items])
    assert lines == expected


@pytest.mark.parametrize("content, detail", [
    ({"model": "m", "dim": 4, "vector": [0.0, 1.0, 2.0]},
     "content.dim is 4 but content.vector has 3 numbers"),
    ({"model": "m", "dim": 2, "vector": [0.0, math.nan]}, "content.vector[1] is nan"),
    ({"model": "m", "dim": 2, "vector": [math.inf, 0.0]}, "content.vector[0] is inf"),
    ({"model": "m", "dim": 0, "vector": []}, "content.dim must be between 1 and 4096, got 0"),
    ({"model": "", "dim": 1, "vector": [1.0]}, "content.model is empty"),
])
def test_a_broken_content_vector_is_refused_naming_the_field(content, detail):
    item = {"item_id": "x", "category": None, "price": None, "in_stock": True,
            "ts": 1700000000000, "title": None, "description": None, "content": content}
    [line] = tool(["--framing", "raw", "decode-items"], [avro(NEW, item).hex()])
    assert line.startswith("ERR invalid_field "), line  # the README's reason (an empty
    assert detail in line, line                          # model was empty_id)


def test_a_writer_wrapping_the_vectors_fields_in_unions_is_read(tmp_path):
    """A writer whose ContentVector has model, dim and the numbers each in a
    union with null (which the codec takes when the schema is registered)
    is read field for field; a null among them is an invalid field. Every
    such record was refused ("writer sent a union") after the schema had
    been taken."""
    schema = json.loads((SCHEMAS / "item_event.avsc").read_text())
    content = next(f for f in schema["fields"] if f["name"] == "content")
    record = next(t for t in content["type"] if isinstance(t, dict))
    for field in record["fields"]:
        if field["name"] == "model":
            field["type"] = ["null", "string"]
        elif field["name"] == "dim":
            field["type"] = ["null", "int"]
        elif field["name"] == "vector":
            field["type"] = {"type": "array", "items": ["null", "float"]}
    (tmp_path / "unions.avsc").write_text(json.dumps(schema))
    writer = fastavro.parse_schema(schema)
    base = {"item_id": "x", "category": None, "price": None, "in_stock": True,
            "ts": 1700000000000, "title": None, "description": None}
    good = {**base, "content": {"model": "m", "dim": 2, "vector": [0.5, -1.0]}}
    nulls = [({"model": None, "dim": 2, "vector": [0.5, -1.0]}, "content.model is null"),
             ({"model": "m", "dim": None, "vector": [0.5, -1.0]}, "content.dim is null"),
             ({"model": "m", "dim": 2, "vector": [0.5, None]}, "content.vector is null")]
    messages = [confluent(41, avro(writer, good))] + \
        [confluent(41, avro(writer, {**base, "content": c})) for c, _ in nulls]
    lines = tool(["--schema", f"41={tmp_path / 'unions.avsc'}", "decode-items"],
                 [m.hex() for m in messages])
    assert lines[0] == expected_line(good), lines[0]
    for line, (_, detail) in zip(lines[1:], nulls):
        assert line.startswith("ERR invalid_field ") and detail in line, line
