"""Django's Redis cache, with one Redis client per connection pool instead of one per command.

Django's ``RedisCacheClient.get_client()`` builds a new ``redis.Redis`` for every cache call,
and redis-py's constructor builds its table of response callbacks each time (hundreds of
entries): about 0.1 ms of Python per call, several times per image request (the token's owner,
the access generation, the remembered decision). A client is only a view of its pool and is safe
to share between threads, so each pool's client is made once. Django makes a cache object per
thread and each gunicorn worker builds its pools after the fork, so nothing is shared across
processes.

``set_many`` with a timeout writes every value with its expiry in one server-side script:
Django's sends a MULTI, an MSET and one EXPIRE per key, which for the 200 decisions remembered
with a series' first frame cost more than the rest of deciding them.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

# KEYS are the keys, ARGV their values and then the expiry in seconds; atomic, as Django's
# MULTI/EXEC is.
_SET_MANY_EXPIRING = """
local seconds = ARGV[#ARGV]
for index, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[index], 'EX', seconds)
end
"""


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._set_many_script = None

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def set_many(self, data, timeout):
        if timeout is None or timeout <= 0:  # kept for good, or deleted: Django's way
            super().set_many(data, timeout)
            return
        client = self.get_client(None, write=True)
        if self._set_many_script is None:
            # Sent by its digest (EVALSHA), and in full only when a server lacks it.
            self._set_many_script = client.register_script(_SET_MANY_EXPIRING)
        dumps = self._serializer.dumps
        values = [dumps(value) for value in data.values()]
        self._set_many_script(keys=list(data), args=[*values, int(timeout)], client=client)


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
