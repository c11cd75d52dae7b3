"""Argument types the commands share."""
from __future__ import annotations

import argparse


def probability(text: str) -> float:
    """A number in [0, 1] (a confidence threshold), or a clear argparse error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value
