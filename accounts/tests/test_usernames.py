"""accounts.usernames: names are the same name under NFKC, case and Unicode's look-alike characters."""

import pytest

from accounts.usernames import username_fold, username_normalize, username_skeleton


@pytest.mark.parametrize("look_alike", [
    "ａｄｍｉｎ",       # full-width
    "аdmin",           # Cyrillic а
    "admіn",           # Cyrillic і
    "ΑDMIN",           # Greek capital alpha
    "ADMIN",
    "Admin",
    "𝐚𝐝𝐦𝐢𝐧",          # mathematical bold
    "adrnin",          # r + n looks like m
])
def test_look_alikes_of_a_name_share_its_skeleton(look_alike):
    assert username_skeleton(look_alike) == username_skeleton("admin")


@pytest.mark.parametrize(("one", "other"), [("alice", "alicia"), ("bob", "bobby"), ("user_1", "user-1"),
                                            ("carol", "caro")])
def test_different_names_have_different_skeletons(one, other):
    assert username_skeleton(one) != username_skeleton(other)


def test_normalize_applies_nfkc_and_keeps_case():
    assert username_normalize(" ＣａｒｏＬ ") == "CaroL"


def test_fold_is_case_insensitive_but_not_look_alike_insensitive():
    assert username_fold("ＣＡＲＯＬ") == username_fold("carol") == "carol"
    assert username_fold("саrol") != username_fold("carol")  # Cyrillic с, а
