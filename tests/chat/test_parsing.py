"""Counts as people write them, and the words of a chat command (pure: no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.parsing import (
    DEFAULT_MAXIMUM,
    ClaimArgs,
    Command,
    CommandRejected,
    CountRejected,
    campaign_id_of,
    claim_args,
    count_forms,
    parse_count,
    report_id_of,
    slack_link,
    split_command,
    word_options,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("7", 7),
        ("007", 7),
        ("12500", 12500),
        ("1,200", 1200),
        ("12,500,000", 12_500_000),
        ("12.5k", 12500),
        ("12.5K", 12500),
        ("12k", 12000),
        ("3M", 3_000_000),
        ("3m", 3_000_000),
        ("1.2b", 1_200_000_000),
        ("1.2B", 1_200_000_000),
        ("1,200.5k", 1_200_500),
        ("1.0", 1),
        ("12.50k", 12500),
        ("0.001k", 1),
        ("  42  ", 42),
        ("1,000,000,000,000", 10**12),
        ("1000b", 10**12),
    ],
)
def test_counts_written_as_people_write_them(text: str, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12.5.5k", "'12.5.5k' is not a number (write it like 12500, 12,500 or 12.5k)"),
        ("1.5", "'1.5' is 1.5, not a whole number"),
        ("1.2345k", "'1.2345k' is 1234.5, not a whole number"),
        ("0.5", "'0.5' is 0.5, not a whole number"),
        ("-5", "'-5' is negative; a count is 0 or more"),
        ("-12.5k", "'-12.5k' is negative; a count is 0 or more"),
        ("1,000,000,000,001", "'1,000,000,000,001' is more than 1,000,000,000,000"),
        ("1001b", "'1001b' is more than 1,000,000,000,000"),
        ("1000.000000001b", "'1000.000000001b' is more than 1,000,000,000,000"),
        ("1,20", "'1,20' is not a number"),
        ("12,5k", "'12,5k' is not a number"),
        ("1,2345", "'1,2345' is not a number"),
        (",100", "',100' is not a number"),
        ("12 500", "'12 500' is not a number"),
        ("+5", "'+5' is not a number"),
        ("1.", "'1.' is not a number"),
        (".5k", "'.5k' is not a number"),
        ("k", "'k' is not a number"),
        ("12kk", "'12kk' is not a number"),
        ("12t", "'12t' is not a number"),
        ("1e6", "'1e6' is not a number"),
        ("１２", "'１２' is not a number"),
        ("ten", "'ten' is not a number"),
        ("", "a number is missing"),
        ("   ", "a number is missing"),
        ("9" * 40, "is too long to be a count"),
    ],
)
def test_what_is_not_a_count_is_refused_naming_the_value(text: str, message: str) -> None:
    with pytest.raises(CountRejected) as refused:
        parse_count(text)
    assert message in refused.value.message
    assert refused.value.value == text


def test_the_maximum_is_a_parameter() -> None:
    assert parse_count("1k", maximum=1000) == 1000
    with pytest.raises(CountRejected, match="more than 999"):
        parse_count("1k", maximum=999)


@given(st.integers(min_value=0, max_value=DEFAULT_MAXIMUM))
def test_every_written_form_of_a_count_parses_back_to_it(n: int) -> None:
    for form in count_forms(n):
        assert parse_count(form) == n, form


@given(st.integers(min_value=DEFAULT_MAXIMUM + 1, max_value=10**18))
def test_every_form_of_a_count_above_the_maximum_is_refused(n: int) -> None:
    for form in count_forms(n):
        with pytest.raises(CountRejected, match="more than"):
            parse_count(form)


@given(st.integers(min_value=1, max_value=10**12))
def test_negative_counts_are_refused_in_every_form(n: int) -> None:
    for form in count_forms(n):
        with pytest.raises(CountRejected, match="negative"):
            parse_count("-" + form)


@given(st.text(max_size=40))
def test_any_text_is_a_count_or_a_refusal_never_another_error(text: str) -> None:
    try:
        value = parse_count(text)
    except CountRejected as exc:
        assert exc.message
    else:
        assert 0 <= value <= DEFAULT_MAXIMUM


def test_count_forms_include_suffixes() -> None:
    assert count_forms(12500) == ["12500", "12,500", "12.5k", "12.5K", "0.0125m", "0.0125M", "0.0000125b", "0.0000125B"]


# --- commands -------------------------------------------------------------------------------------


def test_claim_args_parse_each_number() -> None:
    args = claim_args(url="https://redd.it/abc12", views="12.5k", clicks="1,200", conversions="30", campaign="#7")
    assert args == ClaimArgs(post_url="https://redd.it/abc12", views=12500, clicks=1200, conversions=30, campaign_id=7)


def test_claim_args_name_every_bad_value_at_once() -> None:
    with pytest.raises(CommandRejected) as refused:
        claim_args(url="", views="12.5.5k", clicks="-1", conversions=None, campaign="summer")
    message = str(refused.value)
    assert "the post url is missing" in message
    assert "views: '12.5.5k' is not a number" in message
    assert "clicks: '-1' is negative" in message
    assert "conversions is missing" in message
    assert "campaign: 'summer' is not a campaign id" in message
    assert message.endswith("Usage: /claim <post url> <views> <clicks> <conversions> [campaign id]")


def test_claim_args_without_campaign_leave_it_open() -> None:
    assert claim_args(url="u", views="1", clicks="0", conversions="0").campaign_id is None
    assert claim_args(url="u", views="1", clicks="0", conversions="0", campaign=" ").campaign_id is None


@pytest.mark.parametrize(("text", "expected"), [("7", 7), ("#7", 7), (" 12 ", 12), ("x", None), ("1" * 19, None)])
def test_campaign_ids(text: str, expected: int | None) -> None:
    assert campaign_id_of(text) == expected


def test_report_ids() -> None:
    assert report_id_of("#1234") == 1234
    with pytest.raises(CommandRejected, match="the report id is missing"):
        report_id_of(" ")
    with pytest.raises(CommandRejected, match="'abc' is not a report id"):
        report_id_of("abc")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("<https://redd.it/abc12|redd.it/abc12>", "https://redd.it/abc12"),
        ("<https://redd.it/abc12>", "https://redd.it/abc12"),
        ("https://redd.it/abc12", "https://redd.it/abc12"),
    ],
)
def test_slack_escaped_links_are_unwrapped(text: str, url: str) -> None:
    assert slack_link(text) == url


@pytest.mark.parametrize(
    ("command", "text", "name", "words"),
    [
        ("/claim", "https://redd.it/a 1 2 3", "claim", ["https://redd.it/a", "1", "2", "3"]),
        ("/status", " 12 ", "status", ["12"]),
        ("/affiliates", "claim https://redd.it/a 1 2 3", "claim", ["https://redd.it/a", "1", "2", "3"]),
        ("/affiliates", "STATUS 12", "status", ["12"]),
        ("/affiliates", "", "help", []),
        ("/affiliates", "what", "help", ["what"]),
    ],
)
def test_split_command(command: str, text: str, name: str, words: list[str]) -> None:
    assert split_command(command, text) == Command(name=name, words=words)


def test_word_options() -> None:
    assert word_options(Command("claim", ["u", "1", "2", "3"])) == {
        "url": "u",
        "views": "1",
        "clicks": "2",
        "conversions": "3",
    }
    assert word_options(Command("claim", ["u", "1", "2", "3", "7"]))["campaign"] == "7"
    assert word_options(Command("link", ["ABCD", "EFGH"])) == {"code": "ABCD EFGH"}
    with pytest.raises(CommandRejected, match="too many words \\('8 9' is extra\\)"):
        word_options(Command("claim", ["u", "1", "2", "3", "7", "8", "9"]))
