"""Django's Redis cache, with one Redis client per connection pool instead of one per command.

Django's ``RedisCacheClient.get_client()`` builds a new ``redis.Redis`` for every cache call,
and redis-py's constructor builds its table of response callbacks each time (hundreds of
entries): about 0.1 ms of Python per call, several times per image request (the token's owner,
the access generation, the remembered decision). A client is only a view of its pool and is safe
to share between threads, so each pool's client is made once. Django makes a cache object per
thread and each gunicorn worker builds its pools after the fork, so nothing is shared across
processes.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
