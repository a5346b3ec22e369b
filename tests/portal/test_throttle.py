"""One throttle counter (portal.throttle) for every guess the portal turns away: login, password
and two-factor guesses, and guest-link probes and guesses, all count there, so a fix to the
counter lands once."""

import re
import threading
from pathlib import Path

import pytest
import time_machine
from django.core.cache import cache
from django.test import RequestFactory
from django.utils import timezone

from accounts import services as accounts_services
from guestlinks.services import opening
from portal import throttle

ROOT = Path(__file__).resolve().parent.parent.parent
# Writing a counter: the cache's incr/decr, on whichever cache object.
_COUNTER_WRITE = re.compile(r"\.(incr|decr)\(")


def test_the_throttle_counter_is_written_in_one_module():
    packages = [
        path for path in ROOT.iterdir() if (path / "__init__.py").exists() and path.name != "tests"
    ]
    sources = [
        *ROOT.glob("*.py"),
        *(source for package in packages for source in package.rglob("*.py")),
    ]
    writers = sorted(
        str(source.relative_to(ROOT))
        for source in sources
        if _COUNTER_WRITE.search(source.read_text(encoding="utf-8"))
    )
    assert writers == ["portal/throttle.py"]


@pytest.mark.django_db
def test_logins_and_guest_links_count_through_the_one_counter(monkeypatch, settings):
    reserved = []
    original = throttle.reserve

    def spy(limits, *, window):
        reserved.append(sorted(key.split(":")[0] for key in limits))
        return original(limits, window=window)

    monkeypatch.setattr(throttle, "reserve", spy)
    request = RequestFactory().post("/", REMOTE_ADDR="203.0.113.9")
    accounts_services.reserve_attempt(username="alice", ip="203.0.113.9")
    with pytest.raises(opening.LinkUnavailable):
        opening.find_link(token="b" * 43, request=request)

    assert reserved == [["auth-failures", "auth-failures"], ["guestlink-probe"]]


def test_a_limit_holds_under_concurrency_and_refusals_are_handed_back():
    barrier = threading.Barrier(12)
    outcomes = []
    limits = {"test:account": 4, "test:address": 10}

    def attempt():
        barrier.wait()
        outcomes.append(throttle.reserve(limits, window=60))

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(outcome is None for outcome in outcomes) == 4
    assert cache.get_many(list(limits)) == {"test:account": 4, "test:address": 4}


def test_a_window_opens_with_the_first_attempt_and_ends_on_time():
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False) as clock:
        assert throttle.reserve({"test:key": 1}, window=60) is None
        clock.shift(30)
        until = throttle.reserve({"test:key": 1}, window=60)
        assert until == int(start.timestamp()) + 60
        assert throttle.seconds_until(until) == 30
        clock.shift(31)
        assert throttle.reserve({"test:key": 1}, window=60) is None


def test_clear_forgets_a_counter():
    throttle.reserve({"test:key": 1}, window=60)
    throttle.clear("test:key")
    assert throttle.reserve({"test:key": 1}, window=60) is None


def test_spaced_attempts_wait_a_delay_that_doubles_after_the_free_ones():
    start = timezone.now().replace(microsecond=0)
    t0 = int(start.timestamp())
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(3):
            assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) is None
        assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) == t0 + 10
        clock.shift(10)
        assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) is None
        assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) == t0 + 30
        clock.shift(20)
        assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) is None
        assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) == t0 + 70
        # Never past the window's end, when the counter starts again from zero.
        clock.shift(40)
        assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) is None
        until = throttle.reserve_spaced("test:key", free=3, delay=10, window=600)
        assert until == t0 + 150
        clock.shift(80)
        for _ in range(3):
            throttle.reserve_spaced("test:key", free=3, delay=10, window=600)
        assert throttle.reserve_spaced("test:key", free=3, delay=1000, window=600) == t0 + 600
        clock.shift(600 - 150)
        assert throttle.reserve_spaced("test:key", free=3, delay=10, window=600) is None


def test_spaced_attempts_hold_one_per_slot_under_concurrency():
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(5):
            throttle.reserve_spaced("test:key", free=5, delay=10, window=600)
        assert throttle.reserve_spaced("test:key", free=5, delay=10, window=600) is not None
        clock.shift(10)
        barrier = threading.Barrier(12)
        outcomes = []

        def attempt():
            barrier.wait()
            outcomes.append(throttle.reserve_spaced("test:key", free=5, delay=10, window=600))

        threads = [threading.Thread(target=attempt) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sum(outcome is None for outcome in outcomes) == 1
    # Refusals are handed back: the counter holds the five free attempts and the one slot.
    assert cache.get("test:key") == 6
