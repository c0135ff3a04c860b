"""Hypothesis strategies for messages (valid ones, and hostile junk)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from p2pci.core.messages import (
    BlobRef,
    Cancel,
    Claim,
    Commit,
    Decline,
    ImageRef,
    Limits,
    Message,
    Offer,
    Provenance,
    Require,
    Reveal,
    Select,
)
from p2pci.core.results import ManifestEntry

h32 = st.binary(min_size=32, max_size=32)
u63 = st.integers(min_value=0, max_value=2**63 - 1)
small = st.integers(min_value=1, max_value=1000)
text = st.text(max_size=20)

blob_refs = st.builds(BlobRef, h32, u63)
image_refs = st.builds(
    ImageRef,
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda s: "sha256:" + s),
    st.none() | blob_refs,
)
limits = st.builds(Limits, small, small, st.integers(1, 64), small, small)
keys = st.lists(h32, min_size=1, max_size=5, unique=True).map(tuple)
requires = keys.flatmap(lambda ks: st.builds(Require, st.just(ks), st.integers(1, len(ks))))
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


git_hex = st.text("0123456789abcdef", min_size=40, max_size=40) | st.text(
    "0123456789abcdef", min_size=64, max_size=64
)
provenances = st.builds(Provenance, st.none() | git_hex, st.none() | git_hex, st.none() | text)
sorted_keys = st.lists(h32, max_size=6, unique=True).map(lambda ks: tuple(sorted(ks)))
selects = st.builds(Select, h32, st.integers(0, 255), h32, u63, sorted_keys, sorted_keys)
declines = st.builds(
    Decline,
    h32,
    st.sampled_from(["policy", "slots", "image", "timeout", "start_failed", "x_1"]),
    st.text(max_size=40),
    st.none() | blob_refs,
)


@st.composite
def offers(draw: st.DrawFn) -> Offer:
    replicas = draw(st.integers(1, 64))
    created = draw(st.integers(0, 2**40))
    env = draw(st.dictionaries(env_names, text, max_size=4))
    workers = draw(st.just("open") | keys)
    require = draw(st.none() | requires)
    if require is not None and workers != "open":  # an allowlist must hold every require key
        workers = tuple(sorted(set(workers) | set(require.keys)))
    return Offer(
        project=draw(st.text(min_size=1, max_size=30)),
        source=draw(blob_refs),
        image=draw(image_refs),
        command=tuple(draw(st.lists(text, min_size=1, max_size=4))),
        env=tuple(sorted(env.items())),
        source_date_epoch=draw(st.none() | u63),
        limits=draw(limits),
        replicas=replicas,
        quorum=draw(st.integers(1, replicas)),
        workers=workers,
        require=require,
        created=created,
        deadline=created + draw(st.integers(1, 2**40)),
        select_commit=draw(h32),
        identity_bits=draw(st.integers(0, 40)),
        claim_window=draw(st.integers(100, 600_000)),
        inputs=draw(st.none() | blob_refs),
        provenance=draw(provenances),
    )


paths = st.lists(
    st.from_regex(r"[a-z0-9._-]{1,8}", fullmatch=True).filter(lambda p: p not in (".", "..")),
    min_size=1,
    max_size=3,
).map("/".join)
manifests = st.lists(
    st.builds(ManifestEntry, paths, u63, st.integers(0, 0o777), h32), max_size=5, unique_by=lambda e: e.path
).map(lambda es: tuple(sorted(es, key=lambda e: e.path)))


@st.composite
def reveals(draw: st.DrawFn) -> Reveal:
    exit_code = draw(st.integers(0, 255))
    manifest = draw(manifests)
    return Reveal.of(
        job=draw(h32),
        digest=None,
        salt=draw(st.binary(min_size=16, max_size=32)),
        exit_code=exit_code,
        entries=manifest,
        log=draw(blob_refs),
        seen=tuple(draw(st.lists(h32, max_size=4, unique=True))),
    )


messages: st.SearchStrategy[Message] = st.one_of(
    offers(),
    st.builds(Claim, h32, u63, st.binary(max_size=32)),
    st.builds(Commit, h32, h32),
    reveals(),
    st.builds(Cancel, h32),
    selects,
    declines,
)

# Anything msgpack can carry, floats and ext included: hostile input.
junk: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=40)
    | st.sampled_from(
        ["open", "offer", "reveal", "claim", "commit", "cancel", "select", "decline", "job", "v", "body"]
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
