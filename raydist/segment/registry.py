"""Every binariser, by its ``--segment`` name, in display order (tables, result columns).

Adding one: a module implementing :class:`~raydist.segment.base.Binariser`, and one line here.
The engine, the CLI flags, the result columns and the metric keys all come from this table.
"""

from __future__ import annotations

from raydist.segment.base import Binariser
from raydist.segment.mebin import MEBin
from raydist.segment.relative import AdaptiveRelative, Relative
from raydist.segment.threshold import THR
from raydist.segment.ttpix import TTPix
from raydist.segment.ttt4as import TTT4AS

BINARISERS: dict[str, type[Binariser]] = {b.name: b for b in (THR, TTT4AS, AdaptiveRelative, TTPix, MEBin, Relative)}
# THR (the papers' baseline), TTT4AS (the paper's method), AREL (the best free rule on the dev set)
# and TTPix (its boundary refined by a per-image pixel classifier: the best masks, docs/masks.md);
# MEBin and REL on request: they are baselines
DEFAULT_SEGMENT = ("thr", "ttt4as", "arel", "ttpix")

__all__ = ["BINARISERS", "DEFAULT_SEGMENT"]
