"""Link passwords, hashed with argon2id at OWASP's minimum parameters (19 MiB, 2 iterations,
1 lane): about 22 ms a check here, where Django's default argon2 settings take about 130 ms and
a few wrong guesses a second would saturate a core. Guesses are throttled before they reach
this module (guestlinks.services.opening)."""

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)


def hash_link_password(password: str) -> str:
    return _HASHER.hash(password)


def check_link_password(password: str, encoded: str) -> bool:
    if not encoded:
        return False
    try:
        return _HASHER.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False
