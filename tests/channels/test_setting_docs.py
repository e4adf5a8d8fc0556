"""Every setting has a description for the documentation's settings table, and no description is stale."""

from __future__ import annotations

from ratelimit_channels.setting_docs import SETTING_DOCS
from ratelimit_channels.settings import SETTINGS


def test_every_setting_is_described_and_every_description_names_a_setting() -> None:
    assert sorted(SETTING_DOCS) == sorted(SETTINGS)


def test_descriptions_are_sentences() -> None:
    for keyword, text in SETTING_DOCS.items():
        assert text.strip() and text.rstrip().endswith("."), keyword
