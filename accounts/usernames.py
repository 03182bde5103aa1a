"""What makes two usernames the same name: NFKC, case, and look-alike characters (pure functions).

- `username_normalize`: the form stored and shown, NFKC (Django's `normalize_username`): a
  full-width `ａｄｍｉｎ` is stored as `admin`.
- `username_fold`: the form compared at login and in the login limits: NFKC, case-folded.
- `username_skeleton`: the form two different users may not share (User.username_skeleton is
  unique): the fold with every character replaced by its prototype in Unicode's confusables table
  (UTS #39 "skeleton"), so `аdmin` with a Cyrillic `а` has the skeleton of `admin`.

Python's unicodedata has no confusables data. The table comes from `confusable_homoglyphs`, the
package django-registration uses against homograph usernames; it stores confusables.txt as a
symmetric table (each character with the characters it can be confused with), so the prototype of
a character is recovered from it below: in confusables.txt every source maps to one prototype and
no prototype is itself a source, so a character listed with exactly one partner is a source mapped
to that partner, unless the partner in turn has it as its only partner (a pair: the smaller one
stands for both). Characters outside the table are their own prototype.

Folding case before the skeleton (UTS #39 takes the skeleton of the string as typed) makes case
variants share a skeleton; the price is that a capital I is compared as i, not as its look-alike l.
"""

import unicodedata
from functools import cache

from confusable_homoglyphs.confusables import confusables_data

# confusable_homoglyphs wraps right-to-left characters in LEFT-TO-RIGHT MARKs for display.
_DIRECTION_MARKS = str.maketrans("", "", "\u200e\u200f")


@cache
def _prototypes() -> dict[int, str]:
    """{code point: prototype} for every character that is not its own prototype."""
    table = {key.translate(_DIRECTION_MARKS): [entry["c"].translate(_DIRECTION_MARKS) for entry in entries]
             for key, entries in confusables_data.items()}
    prototypes = {}
    for char, partners in table.items():
        if len(char) != 1 or len(partners) != 1:
            continue
        partner = partners[0]
        if len(partner) > 1 or len(table.get(partner, ())) > 1:
            prototypes[ord(char)] = partner
        elif char > partner:  # a pair: both stand for the smaller
            prototypes[ord(char)] = partner
    return prototypes


def username_normalize(username: str) -> str:
    return unicodedata.normalize("NFKC", username.strip())


def username_fold(username: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username.strip()).casefold())


def username_skeleton(username: str) -> str:
    """UTS #39's skeleton of the case-folded name: NFD, each character to its prototype, NFD; then
    folded again (prototypes may be capitals, e.g. the digit 0 maps to O)."""
    decomposed = unicodedata.normalize("NFD", username_fold(username))
    mapped = unicodedata.normalize("NFD", decomposed.translate(_prototypes()))
    return unicodedata.normalize("NFD", username_fold(mapped))
