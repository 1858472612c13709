"""``hiwater verify``: prove the target holds what the source holds, window by window of the cursor.

- :mod:`.plan`: the cursor range and its windows (pure);
- :mod:`.digest`: the one checksum definition every side computes;
- :mod:`.sides`: the source and the target, each answering digests (in the database where it is one);
- :mod:`.bisect`: split the differing windows by key hash until keys can be named (pure);
- :mod:`.run`: one stream end to end, its result record, and ``--repair``.
"""
