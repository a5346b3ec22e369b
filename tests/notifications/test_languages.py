"""Which language a message to several recipients is written in (PACSonWEB's rule)."""

import pytest

from accounts.models import User
from notifications.languages import choose_language, language_of, supported_language


@pytest.mark.parametrize(
    ("languages", "override", "expected"),
    [
        ([], None, "en"),
        (["nl"], None, "nl"),
        (["fr", "nl", "nl"], None, "nl"),  # two of three share Dutch
        (["fr", "nl"], None, "fr"),  # no majority: the first recipient's
        (["de", "fr", "nl", "nl"], None, "de"),  # half is not a majority
        (["de", "fr", "fr", "fr", "nl"], None, "fr"),
        (["fr", "nl", "nl"], "de", "de"),  # the sender's choice wins
        (["fr", "nl", "nl"], "", "nl"),
        (["fr", "nl", "nl"], "klingon", "nl"),  # an unusable choice is no choice
        (["fr-BE", "nl_be", "NL"], None, "nl"),
        (["xx", "fr"], None, "en"),  # an unknown language counts as the default
        (["xx", "yy", "fr"], None, "en"),
    ],
)
def test_choose_language(languages, override, expected):
    assert choose_language(languages, override) == expected


def test_default_follows_the_settings(settings):
    settings.LANGUAGE_CODE = "fr"
    assert choose_language([]) == "fr"


def test_supported_language_reads_regional_variants():
    assert supported_language("de-CH") == "de"
    assert supported_language("pt") is None
    assert supported_language(None) is None


def test_language_of_a_user(db):
    assert language_of(User(username="x", language="de")) == "de"
    assert language_of(User(username="y", language="")) == "en"
    assert language_of(object()) == "en"
