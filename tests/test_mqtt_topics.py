"""MQTT topic names: a device name is one level, whatever it holds; filters and templates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeflow.mqtt.topics import (
    TopicTemplate,
    escape_level,
    topic_matches,
    unescape_level,
    validate_filter,
    validate_topic,
)

names = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)


@given(names)
def test_an_escaped_name_is_one_wildcard_free_level_and_comes_back(name: str) -> None:
    level = escape_level(name)
    assert "/" not in level and "+" not in level and "#" not in level
    assert unescape_level(level) == name


@given(names, names)
def test_different_names_never_share_a_level(a: str, b: str) -> None:
    if a != b:
        assert escape_level(a) != escape_level(b)


@pytest.mark.parametrize(
    ("name", "level"),
    [("a/b", "a%2Fb"), ("+", "%2B"), ("#", "%23"), ("50%", "50%25"), ("plain-name_1", "plain-name_1")],
)
def test_escapes(name: str, level: str) -> None:
    assert escape_level(name) == level
    assert unescape_level(level) == name
    assert unescape_level(level.lower()) == name  # %2f is %2F


@pytest.mark.parametrize("level", ["50%", "%41", "%2", "a%zz"])
def test_a_level_no_name_escapes_to_is_refused(level: str) -> None:
    with pytest.raises(ValueError, match="'%' must start"):
        unescape_level(level)


def test_a_device_called_a_slash_b_or_a_wildcard_cannot_reach_another_devices_topics() -> None:
    t = TopicTemplate.parse("incoming/data/{device}/{source}")
    assert t.render(device="a/b", source="x") == "incoming/data/a%2Fb/x"
    assert t.match(t.render(device="a/b", source="x")) == {"device": "a/b", "source": "x"}
    assert t.render(device="+", source="#") == "incoming/data/%2B/%23"
    # device "a" publishing under "a/b" is a different topic from device "a/b"
    assert t.match("incoming/data/a/b/x") is None
    cmd = TopicTemplate.parse("command/{device}/#")
    assert cmd.filter == "command/+/#"
    assert not topic_matches(f"command/{escape_level('a')}/#", f"command/{escape_level('a/b')}/x/get/1")


def test_templates() -> None:
    t = TopicTemplate.parse("site/+/{device}/data/#")
    assert t.filter == "site/+/+/data/#"
    assert t.match("site/north/pump%2F7/data/x/y") == {"device": "pump/7"}
    assert t.match("site/north/pump/other") is None
    with pytest.raises(ValueError, match="whole level"):
        TopicTemplate.parse("a/x{device}/b")
    with pytest.raises(ValueError, match="unknown level"):
        TopicTemplate.parse("a/{dev}", allowed=frozenset({"device"}))
    with pytest.raises(ValueError, match="appears twice"):
        TopicTemplate.parse("{device}/{device}")
    with pytest.raises(ValueError, match="last level"):
        TopicTemplate.parse("a/#/{device}")


def test_topic_and_filter_checks() -> None:
    assert validate_topic("a/b") == "a/b"
    for bad in ("", "a/+", "a/#", "a\x00b"):
        with pytest.raises(ValueError, match=r"empty|wildcards|NUL"):
            validate_topic(bad)
    assert validate_filter("a/+/#") == "a/+/#"
    for bad in ("a/#/b", "a/b+", ""):
        with pytest.raises(ValueError, match=r"last level|whole level|empty"):
            validate_filter(bad)
    assert topic_matches("a/#", "a")
    assert not topic_matches("#", "$SYS/x")
    assert not topic_matches("+/x", "$SYS/x")
