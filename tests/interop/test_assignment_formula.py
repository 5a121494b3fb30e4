"""The README's variant-assignment formula, implemented independently in
Python with the xxhash package, gives the assignments streamrec makes (the
C test 070_assign pins the same sixteen users)."""
import math

import xxhash


def assign(salt, user_id, variants):
    """variants: list of (name, share). Returns the index of the serving variant."""
    best, best_score = 0, -math.inf
    for index, (name, share) in enumerate(variants):
        key = salt.encode() + b"\0" + user_id.encode() + b"\0" + name.encode()
        unit = ((xxhash.xxh3_64_intdigest(key) >> 11) + 0.5) / 2**53
        score = -share / math.log(unit)
        if score > best_score:
            best, best_score = index, score
    return best


def test_formula_matches_streamrec():
    variants = [("control", 0.5), ("treatment", 0.5)]
    got = "".join(str(assign("streamrec", f"u{u}", variants)) for u in range(16))
    assert got == "0111000110111001"
