"""Near-duplicate lookup: the hash index against a brute-force search."""

from __future__ import annotations

import random

from portraitcolor.dedupe import HashIndex


def test_hash_index_matches_brute_force():
    rng = random.Random(0)
    index = HashIndex(4)
    stored = [rng.getrandbits(64) for _ in range(300)]
    for value in stored:
        index.add(value)
    probes = [value ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for value in stored[:50]]
    probes += [rng.getrandbits(64) for _ in range(50)]
    probes += [stored[0] ^ 0b11111]  # exactly 5 bits away
    for probe in probes:
        expected = any((probe ^ value).bit_count() <= 4 for value in stored)
        assert index.contains_near(probe) == expected
