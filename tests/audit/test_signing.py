"""The heads' signing key: made by `stampline audit keygen`, kept 0600 outside the store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from stampline.audit import (
    PublishedHead,
    SigningKeyError,
    generate_key,
    load_private_key,
    load_public_key,
)
from stampline.cli import app


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_one(
    tmp_path: Path,
) -> None:
    """`audit keygen --out FILE` writes FILE (0600) and FILE.pub, and refuses to run again
    over them, naming the file."""
    key = tmp_path / "heads.key"
    made = CliRunner().invoke(app, ["audit", "keygen", "--out", str(key), "--json"])
    assert made.exit_code == 0, made.output
    body = orjson.loads(made.stdout)
    assert body["public_key"] == f"{key}.pub"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(body["key_id"]) == 16
    again = CliRunner().invoke(app, ["audit", "keygen", "--out", str(key)])
    assert again.exit_code == 1
    assert f"{key} exists" in again.stderr


def test_a_head_signed_with_the_key_verifies_and_a_changed_one_does_not(tmp_path: Path) -> None:
    """A head signed with the private key verifies with the public key; the same head with
    any field changed, or read back without its signature, does not."""
    generate_key(tmp_path / "k", tmp_path / "k.pub")
    key, public = load_private_key(tmp_path / "k"), load_public_key(tmp_path / "k.pub")
    head = PublishedHead("t/0", 3, "ab" * 32, 7, 1, {"t/0": 3, "t/1": 2})
    signed = PublishedHead.from_message(head.message(key))
    assert signed.signed_by(public)
    body = orjson.loads(head.message(key))
    body["chains"] = {"t/0": 3}
    assert not PublishedHead.from_message(orjson.dumps(body)).signed_by(public)
    assert not PublishedHead.from_message(head.message()).signed_by(public)


def test_a_key_others_can_read_or_inside_the_store_is_refused(tmp_path: Path) -> None:
    """The recorder refuses a signing key readable by others, and one inside the store folder
    (whoever writes the store could sign with it), naming the file."""
    store = tmp_path / "store"
    store.mkdir()
    generate_key(store / "k", tmp_path / "k.pub")
    with pytest.raises(SigningKeyError, match="inside the store folder"):
        load_private_key(store / "k", store)
    (store / "k").chmod(0o644)
    with pytest.raises(SigningKeyError, match=r"readable by others \(mode 644\)"):
        load_private_key(store / "k")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1]", "not a JSON object"),
        (b'{"seq": 1, "head": "' + b"a" * 64 + b'"}', "no chain"),
        (b'{"chain": "t/0", "seq": 1, "head": "ab"}', "head is not 64 hex digits"),
        (b'{"chain": "t/0", "seq": 0, "head": "' + b"a" * 64 + b'"}', "seq is not a positive"),
        (
            b'{"chain": "t/0", "seq": 1, "head": "' + b"a" * 64 + b'", "chains": [1]}',
            "chains is not an object",
        ),
        (
            b'{"chain": "t/0", "seq": 1, "head": "' + b"a" * 64 + b'", "offset": [1]}',
            "offset or published_ns is not an integer",
        ),
    ],
)
def test_an_unreadable_head_is_refused_naming_the_field(body: bytes, reason: str) -> None:
    """A message on the heads topic that is not a head is refused with the field it lacks."""
    with pytest.raises(ValueError, match=reason):
        PublishedHead.from_message(body)
