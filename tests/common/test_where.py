"""Every report names a record's origin the same way: ``topic[partition]@offset``."""

from __future__ import annotations

from stampline._common import where


def test_where_names_topic_partition_and_offset() -> None:
    """A record of md.raw, partition 3, offset 42 reads ``md.raw[3]@42``."""
    assert where("md.raw", 3, 42) == "md.raw[3]@42"


def test_where_names_what_a_broken_message_lacks() -> None:
    """A consume error with no partition or offset still names its topic, the rest as None."""
    assert where("md.raw", None, None) == "md.raw[None]@None"
