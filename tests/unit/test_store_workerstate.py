"""The worker state the daemon persists (kv `worker/<job>`) round-trips exactly."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from p2pci.core.messages import BlobRef
from p2pci.core.worker import TERMINAL, WorkerJob

h32 = st.binary(min_size=32, max_size=32)
ints = st.none() | st.integers(0, 2**62)
phases = st.sampled_from(["SEEN", "WAITING", "CLAIMED", "BUILDING", "BUILT", "COMMITTED", *sorted(TERMINAL)])


@given(
    st.builds(
        WorkerJob,
        job=h32,
        phase=phases,
        first_seen=ints,
        claim_at=ints,
        reveal_at=ints,
        lease_until=ints,
        renew_at=ints,
        exit_code=st.none() | st.integers(0, 255),
        manifest=st.none() | st.builds(BlobRef, h32, st.integers(1, 2**28)),
        files=st.integers(0, 1_000_000),
        log=st.none() | st.builds(BlobRef, h32, st.integers(0, 2**40)),
        salt=st.none() | st.binary(min_size=16, max_size=16),
        digest=st.none() | h32,
        commit=st.none() | h32,
        reason=st.text(max_size=30),
        settle_until=ints,
    )
)
def test_worker_job_round_trip_through_msgpack(wj: WorkerJob) -> None:
    data = msgpack.packb(wj.to_obj(), use_bin_type=True)
    assert WorkerJob.from_obj(msgpack.unpackb(data, raw=False)) == wj
