"""The shared cache's speed-ups: one Redis client per connection pool and many expiring values
written in one command (portal.cache), and "once per period" answered in the process after the
shared cache decided (portal.once)."""

import pytest
import redis

from portal import once
from portal.cache import RedisCache


@pytest.fixture
def redis_url(scratch_redis_url):
    yield scratch_redis_url
    RedisCache(scratch_redis_url, {}).clear()


def test_one_redis_client_per_pool(redis_url, monkeypatch):
    built = []
    original = redis.Redis.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    redis_cache = RedisCache(redis_url, {"KEY_PREFIX": "test-shared-cache"})
    for n in range(20):
        redis_cache.set(f"key-{n}", n)
        assert redis_cache.get(f"key-{n}") == n
    assert redis_cache.get_many(["key-1", "key-2"]) == {"key-1": 1, "key-2": 2}
    assert redis_cache.add("key-1", "other") is False
    assert len(built) == 1


def test_many_values_are_written_with_their_expiry_in_one_command(redis_url, monkeypatch):
    redis_cache = RedisCache(redis_url, {"KEY_PREFIX": "test-set-many"})
    redis_cache.set("kept", "before")
    redis_cache.set_many({"first": 1}, timeout=90)  # loads the script if the server lacks it
    sent = []
    original = redis.Redis.execute_command

    def counting(self, *args, **options):
        sent.append(args[0])
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    values = {f"decision-{n}": ("generation", n, {"study": n}) for n in range(200)}
    redis_cache.set_many(values, timeout=90)

    assert sent == ["EVALSHA"]
    assert redis_cache.get_many(list(values)) == values
    client = redis.Redis.from_url(redis_url)
    ttls = {client.ttl(redis_cache.make_key(key)) for key in values}
    assert ttls and all(85 <= ttl <= 90 for ttl in ttls)

    # Kept for good (no expiry) and deleted (a timeout of 0) keep Django's meaning.
    redis_cache.set_many({"for-good": 1}, timeout=None)
    assert client.ttl(redis_cache.make_key("for-good")) == -1
    redis_cache.set_many({"kept": "after"}, timeout=0)
    assert redis_cache.get("kept") is None


class CountingCache:
    """The default cache, counting the adds that reach it."""

    def __init__(self, cache):
        self.cache, self.adds = cache, 0

    def add(self, *args, **kwargs):
        self.adds += 1
        return self.cache.add(*args, **kwargs)


@pytest.fixture
def counted(monkeypatch):
    from django.core.cache import caches

    counting = CountingCache(caches["default"])
    monkeypatch.setattr(once, "caches", {"default": counting})
    clock = [1000.0]
    monkeypatch.setattr(once.time, "time", lambda: clock[0])
    return counting, clock


def test_the_first_caller_acts_and_the_process_remembers(counted):
    counting, _clock = counted
    assert once.first_in_period("audit:a", 60) is True
    assert [once.first_in_period("audit:a", 60) for _ in range(50)] == [False] * 50
    # One question to the shared cache for all of them.
    assert counting.adds == 1
    # Another key is its own period.
    assert once.first_in_period("audit:b", 60) is True


def test_a_period_another_process_started_is_rechecked_after_a_few_seconds(counted):
    counting, clock = counted
    counting.cache.add("audit:c", True, timeout=60)  # another worker was first
    assert once.first_in_period("audit:c", 60) is False
    assert once.first_in_period("audit:c", 60) is False
    assert counting.adds == 1
    # The shared cache lost the key (evicted, restarted): the next period starts soon, not
    # after a whole period of silence.
    counting.cache.delete("audit:c")
    clock[0] += once.RECHECK_SECONDS + 1
    assert once.first_in_period("audit:c", 60) is True


def test_the_next_period_starts_when_this_one_ends(counted):
    counting, clock = counted
    assert once.first_in_period("audit:d", 30) is True
    counting.cache.delete("audit:d")  # the shared cache's own timeout
    clock[0] += 29
    assert once.first_in_period("audit:d", 30) is False
    clock[0] += 2
    assert once.first_in_period("audit:d", 30) is True


def test_a_process_forgets_expired_keys_when_it_holds_many(counted, monkeypatch):
    _counting, clock = counted
    monkeypatch.setattr(once, "_PRUNE_AT", 10)
    for n in range(10):
        once.first_in_period(f"audit:{n}", 5)
    clock[0] += 6
    once.first_in_period("audit:new", 5)
    assert set(once._known_until) == {"audit:new"}
