"""When two names read alike: the keys a name is compared under.

A guest may not chat under a name that reads like a registered user's: the
same letters in another case, look-alikes from another script or form
(Cyrillic "а", fullwidth "ａ", capital "I" for "l"), or the same letters with
invisible characters (a zero-width joiner) or accents added. Two names read
alike when they share a key. The keys are TR39 skeletons (Unicode's
confusable folding) computed by ``disarm``; the registered users' keys are
stored by :class:`chatroom.models.NameKey`, which keeps them in sync.

This module is plain functions of strings, without Django, so that a key
reads the same in a migration, a view and a test.
"""

from __future__ import annotations

import unicodedata

import disarm

# Folds 0 with O and 1 with l as well as letters: what an identifier's skeleton wants.
DIGIT_POLICY = "tr39"


def _without_diacritics(name: str) -> str:
    """``name`` decomposed, without the combining marks that belong to no script.

    Those (accents, strokes, enclosing circles: Unicode's Inherited script)
    decorate any letter; a script's own marks (Devanagari vowel signs, Hebrew
    points, the kana voicing mark) are part of its letters and stay.
    """
    return "".join(
        char
        for char in unicodedata.normalize("NFKD", name)
        if unicodedata.category(char) not in ("Mn", "Me") or disarm.detect_scripts(char)
    )


def name_keys(name: str) -> set[str]:
    """The keys ``name`` is compared under; empty when nothing visible is left of it.

    The skeleton of the name as written and of its case-folded form: a
    capital I reads like l but a small i does not, so "ADMIN" shares a key
    with "admln" as written and with "admin" once folded.
    """
    bare = _without_diacritics(name)
    keys = {disarm.skeleton_key(form, digit_policy=DIGIT_POLICY) for form in (bare, bare.casefold())}
    keys.discard("")
    return keys
