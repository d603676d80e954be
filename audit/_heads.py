"""A published chain head: what the recorder sends outside the store, and how it is read back.

One message per chain the recorder owns, keyed by the chain id (JSON, ``stampline.head/2``):
``chain``, ``seq`` (the chain's length: its entries are 1..seq), ``head`` (the chain value of
entry ``seq``), ``offset``, ``published_ns`` and ``chains`` — every chain this recorder owned
when it published, with its length, so a chain in the store that no recorder ever named is
found. With a signing key the message also holds ``key_id`` and ``sig``: Ed25519 over the
message's other fields as JSON with sorted keys (``PublishedHead.signed_bytes``), so a head
written onto the topic by anyone without the key is told apart from the recorder's.
Version 1 messages (no ``schema``, no ``chains``) still read, with ``chains`` of their own
chain only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stampline.audit._signing import key_id, sign, signature_ok

HEAD_SCHEMA = "stampline.head/2"


@dataclass(frozen=True, slots=True)
class PublishedHead:
    """One head as published; ``where`` says where it was read (``topic[p]@offset``)."""

    chain: str
    seq: int
    head: str
    offset: int = -1
    published_ns: int = 0
    chains: Mapping[str, int] = field(default_factory=dict)
    key_id: str = ""
    sig: str = ""
    where: str = ""

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but ``sig`` and ``where``."""
        body = {
            "schema": HEAD_SCHEMA,
            "chain": self.chain,
            "seq": self.seq,
            "head": self.head,
            "offset": self.offset,
            "published_ns": self.published_ns,
            "chains": dict(self.chains),
            "key_id": self.key_id,
        }
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    def message(self, key: Ed25519PrivateKey | None = None) -> bytes:
        """The message to publish, signed with ``key`` when one is given."""
        if key is None:
            return self.signed_bytes()
        signed = PublishedHead(
            self.chain,
            self.seq,
            self.head,
            self.offset,
            self.published_ns,
            self.chains,
            key_id(key.public_key()),
        )
        data = signed.signed_bytes()
        return orjson.dumps({**orjson.loads(data), "sig": sign(key, data)})

    def signed_by(self, public: Ed25519PublicKey) -> bool:
        """Whether ``sig`` is this head's signature by ``public``'s private key."""
        return bool(self.sig) and signature_ok(public, self.signed_bytes(), self.sig)

    @classmethod
    def from_message(cls, data: bytes, where: str = "") -> PublishedHead:
        """Read a published head.

        Raises:
            ValueError: not a head message (the reason names the field).
        """
        body: Any = orjson.loads(data)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        chain, head, seq = body.get("chain"), body.get("head"), body.get("seq")
        if not isinstance(chain, str) or not chain:
            raise ValueError("no chain")
        if not isinstance(head, str) or len(head) != 64:
            raise ValueError("head is not 64 hex digits")
        if not isinstance(seq, int) or seq < 1:
            raise ValueError("seq is not a positive integer")
        chains = body.get("chains", {chain: seq})
        if not isinstance(chains, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in chains.items()
        ):
            raise ValueError("chains is not an object of chain lengths")
        offset, published_ns = body.get("offset", -1), body.get("published_ns", 0)
        if not isinstance(offset, int) or not isinstance(published_ns, int):
            raise ValueError("offset or published_ns is not an integer")
        return cls(
            chain,
            seq,
            head.lower(),
            offset,
            published_ns,
            chains,
            str(body.get("key_id", "")),
            str(body.get("sig", "")),
            where,
        )
