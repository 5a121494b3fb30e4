"""Writes the decoder's seed corpus (run once; the corpus is kept in the tree).

Valid raw and Confluent-framed UserEvents covering every type and optional
field, plus a few known-bad shapes, written with fastavro from the schema.
"""
import io
import json
import pathlib
import struct

import fastavro

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA = fastavro.parse_schema(json.loads((HERE.parent.parent / "schemas" / "user_event.avsc").read_text()))
TYPES = ["IMPRESSION", "VIEW", "CLICK", "ADD_TO_CART", "REMOVE_FROM_CART", "FAVORITE", "PURCHASE"]


def body(record):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, record)
    return buf.getvalue()


def main():
    out = HERE / "corpus" / "user_event"
    out.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for i, kind in enumerate(TYPES):
        record = {"event_id": f"e{i}", "user_id": f"user-{i}", "item_id": "sku-ü🛒", "type": kind,
                  "ts": 1700000000000 + i, "session_id": "s1" if i % 2 else None,
                  "quantity": 2 if kind == "PURCHASE" else None,
                  "price": 9.5 if i % 3 == 0 else None}
        seeds[f"raw_{kind.lower()}"] = body(record)
        seeds[f"confluent1_{kind.lower()}"] = b"\0" + struct.pack(">I", 1) + body(record)
    seeds["confluent_unknown_id"] = b"\0\0\0\0\x63" + body({**record, "type": "VIEW"})
    seeds["bad_magic"] = b"\x01\0\0\0\x01" + body({**record, "type": "VIEW"})
    seeds["trailing"] = body({**record, "type": "VIEW"}) + b"\x02"
    seeds["huge_length"] = bytes([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0x61])
    for name, data in seeds.items():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
