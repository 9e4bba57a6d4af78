"""Admission's two refusal rules, as admit (with the item count) and check_room (before
decoding, no count) apply them: the limit boundary and the wait for a worker."""

from __future__ import annotations

import time

import pytest

from hyperdx.local.admission import Admission, Overloaded


def _refusal(action: object) -> str:
    with pytest.raises(Overloaded) as caught:
        action()  # type: ignore[operator]
    return caught.value.reason


def test_admit_refuses_only_past_the_limit_and_check_room_once_it_is_reached() -> None:
    admission = Admission(initial_limit=10, min_limit=10, max_limit=10)
    now = time.monotonic()
    admission.admit(6, now)
    admission.check_room(now)  # 6 < 10: room
    admission.admit(4, now)  # 6 + 4 == 10: not past the limit
    assert admission.queued_items == 10
    assert _refusal(lambda: admission.check_room(now)) == "10 items queued ahead (limit 10)"
    admission.done(1, True, now)
    admission.check_room(now)  # 9 < 10
    assert _refusal(lambda: admission.admit(2, now)) == "9 items queued ahead (limit 10)"
    admission.admit(1, now)
    assert admission.queued_items == 10 and admission.refused == 2


def test_a_lone_request_is_admitted_whatever_its_size() -> None:
    admission = Admission(initial_limit=10, min_limit=10, max_limit=10)
    now = time.monotonic()
    admission.check_room(now)
    admission.admit(500, now)
    assert admission.queued_items == 500 and admission.refused == 0


def test_a_request_that_waited_for_a_worker_past_the_target_is_refused_by_both() -> None:
    admission = Admission(target_latency=0.5)
    long_ago = time.monotonic() - 0.6
    assert _refusal(lambda: admission.check_room(long_ago, queued=True)).startswith("waited 0.6")
    assert _refusal(lambda: admission.admit(1, long_ago, queued=True)).startswith("waited 0.6")
    # the same wait without queueing for a worker (a slow machine) refuses nothing
    admission.check_room(long_ago)
    admission.admit(1, long_ago)
    assert admission.refused == 2 and admission.queued_items == 1
