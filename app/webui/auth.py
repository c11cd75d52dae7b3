"""The web UI's login: credentials that never need to be on a command line, and a check that
slows down password guessing.

Gradio calls an async `auth(username, password)` on its event loop for every login; this
one compares in constant time and serialises the checks, and after a few failures makes
each further check wait (1 s, then doubling up to `MAX_DELAY`) until failures stop for a
minute. 30 wrong logins sent at once are thus answered over minutes, not in 2 seconds. The
delay is global (Gradio does not tell the check who is asking), so during an attack the
right user waits too -- but is never locked out, and no thread is held while waiting.
"""
from __future__ import annotations

import asyncio
import hmac
import os
import time
from pathlib import Path
from typing import Awaitable, Callable

FREE_FAILURES = 3  # typos: no delay for the first few failures in a window
WINDOW = 60.0  # seconds without a failure that reset the count
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
ENV = "RMTQA_AUTH"


class AuthError(ValueError):
    """Credentials given in a form that cannot be used (one clear line)."""


def parse_credentials(value: str, where: str) -> tuple[str, str]:
    """USER:PASSWORD (the password may contain ':') -> (user, password)."""
    user, sep, password = value.strip().partition(":")
    if not sep or not user or not password:
        raise AuthError(f"{where} must be USER:PASSWORD (both non-empty)")
    return user, password


def load_credentials(argument: str | None, file: str | Path | None, environ: dict | None = None) -> tuple[str, str] | None:
    """The login from `--auth USER:PASSWORD`, `--auth-file FILE` (its first line) or the
    `RMTQA_AUTH` environment variable (in that order of precedence; at most one of the
    first two). The last two keep the password out of `ps`."""
    environ = os.environ if environ is None else environ
    if argument is not None and file is not None:
        raise AuthError("give --auth or --auth-file, not both")
    if argument is not None:
        return parse_credentials(argument, "--auth")
    if file is not None:
        try:
            lines = Path(file).read_text().splitlines()
        except OSError as error:
            raise AuthError(f"cannot read --auth-file {file}: {error.strerror or error}") from None
        return parse_credentials(lines[0] if lines else "", f"the first line of {file}")
    if environ.get(ENV):
        return parse_credentials(environ[ENV], ENV)
    return None


class LoginThrottle:
    """An async Gradio `auth` callable for one USER:PASSWORD that slows down guessing; the
    OpenAI-compatible API checks its bearer tokens with `check_token`, through the same delay."""

    def __init__(self, user: str, password: str, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self._user, self._password = user.encode(), password.encode()
        self._clock, self._sleep = clock, sleep
        self._lock: asyncio.Lock | None = None
        self.failures = 0
        self._last_failure = float("-inf")

    def delay(self) -> float:
        """How long the next check waits, given the recent failures."""
        if self._clock() - self._last_failure > WINDOW:
            self.failures = 0
        extra = self.failures - FREE_FAILURES
        return 0.0 if extra < 0 else min(FIRST_DELAY * 2 ** extra, MAX_DELAY)

    async def __call__(self, username: str, password: str) -> bool:
        return await self._check(lambda: hmac.compare_digest(username.encode(), self._user)
                                 & hmac.compare_digest(password.encode(), self._password))

    async def check_token(self, token: str) -> bool:
        """An API bearer token: the password, or USER:PASSWORD (the auth file's line)."""
        user, sep, password = token.partition(":")
        return await self._check(lambda: hmac.compare_digest(token.encode(), self._password)
                                 | (bool(sep) & hmac.compare_digest(user.encode(), self._user)
                                    & hmac.compare_digest(password.encode(), self._password)))

    async def _check(self, matches: Callable[[], bool]) -> bool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one check at a time: parallel guesses queue up
            wait = self.delay()
            if wait:
                await self._sleep(wait)
            ok = bool(matches())
            if ok:
                self.failures = 0
            else:
                self.failures += 1
                self._last_failure = self._clock()
            return ok
