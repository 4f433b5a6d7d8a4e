"""Character-level text corruptions: adjacent swaps, deletions and keyboard typos.

Each takes a string, a generator and a ``rate`` (the fraction of characters or letters
edited) and makes at least one edit on any text that has a letter, so a short text
is corrupted too. Positions are drawn without replacement, so the rate is exact up to
rounding.
"""

from __future__ import annotations

import numpy as np

_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _qwerty_neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard (same row and the staggered rows)."""
    rows = _QWERTY_ROWS
    near: dict[str, str] = {}
    for r, row in enumerate(rows):
        for i, ch in enumerate(row):
            keys = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            if r > 0:  # the row above sits half a key to the left
                keys += [rows[r - 1][j] for j in (i, i + 1) if j < len(rows[r - 1])]
            if r + 1 < len(rows):
                keys += [rows[r + 1][j] for j in (i - 1, i) if 0 <= j < len(rows[r + 1])]
            near[ch] = "".join(sorted(keys))
    return near


QWERTY_NEIGHBOURS: dict[str, str] = _qwerty_neighbours()  # e.g. "s" → "adewxz"


def _count(rate: float, size: int) -> int:
    """Edits for ``size`` units at ``rate``: at least one when there is anything to edit."""
    return max(1, round(rate * size)) if size > 0 else 0


def char_swap(text: str, rng: np.random.Generator, *, rate: float) -> str:
    """Swap adjacent, different letters inside words until ``rate`` of characters moved.

    Each swap moves two characters, so ``round(rate × len / 2)`` swaps (at least one) are
    made on non-overlapping pairs. A text with no two different adjacent letters swaps a
    letter with a neighbouring character instead (``"a b"`` → ``" ab"``); a text whose
    characters are all the same cannot be changed by a swap and is returned as is.
    """
    chars = list(text)
    letter_pairs = [
        i
        for i in range(len(chars) - 1)
        if chars[i].isalpha() and chars[i + 1].isalpha() and chars[i] != chars[i + 1]
    ]
    if not letter_pairs:  # fall back to a letter and any different neighbour
        letter_pairs = [
            i
            for i in range(len(chars) - 1)
            if (chars[i].isalpha() or chars[i + 1].isalpha()) and chars[i] != chars[i + 1]
        ]
    wanted = max(1, round(rate * len(chars) / 2))
    used: set[int] = set()
    done = 0
    for i in rng.permutation(letter_pairs) if letter_pairs else ():
        if done == wanted:
            break
        i = int(i)
        if i in used or i + 1 in used:
            continue
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
        used.update((i, i + 1))
        done += 1
    return "".join(chars)


def char_delete(text: str, rng: np.random.Generator, *, rate: float) -> str:
    """Delete ``round(rate × len)`` non-space characters (at least one).

    Spaces are not deleted (the text processor collapses whitespace, so that would often
    be no edit at all), and one visible character is always kept so the cell never
    becomes empty; a one-character text is therefore returned as is.
    """
    visible = [i for i, ch in enumerate(text) if not ch.isspace()]
    k = min(_count(rate, len(text)), len(visible) - 1)
    if k <= 0:
        return text
    gone = {int(i) for i in rng.choice(visible, size=k, replace=False)}
    return "".join(ch for i, ch in enumerate(text) if i not in gone)


def keyboard_typo(text: str, rng: np.random.Generator, *, rate: float) -> str:
    """Replace ``round(rate × letters)`` letters (at least one) with a QWERTY neighbour.

    Only the Latin letters a–z have neighbours; case is kept (``"S"`` → ``"D"``).
    """
    letters = sum(ch.isalpha() for ch in text)
    typeable = [i for i, ch in enumerate(text) if ch.lower() in QWERTY_NEIGHBOURS]
    k = min(_count(rate, letters), len(typeable))
    if k <= 0:
        return text
    chars = list(text)
    for i in sorted(int(j) for j in rng.choice(typeable, size=k, replace=False)):
        options = QWERTY_NEIGHBOURS[chars[i].lower()]
        new = options[int(rng.integers(len(options)))]
        chars[i] = new.upper() if chars[i].isupper() else new
    return "".join(chars)
