"""The figures F1-F6: their definitions, ``reproduce`` (regenerates every one and INDEX.md) and plotting."""

from ._reproduce import reproduce as reproduce
