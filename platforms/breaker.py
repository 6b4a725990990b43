"""A circuit breaker per platform whose state lives in Redis and is shared by every worker process.

Each platform has one hash (``<prefix><platform>``) with ``state``, ``failures``, ``opened_at``,
``probes`` and ``half_open_at``. Every read-decide-write happens inside one short Lua script, so two
workers can never both see "2 of 3 probes used" and both take the third, and every timestamp comes
from ``redis.call('TIME')``: worker clocks drift, the Redis clock is the one clock all workers share.

Transitions::

    CLOSED --failure_threshold consecutive failures--> OPEN
    OPEN --open_cooldown_seconds elapsed (noticed by the next before_call)--> HALF_OPEN
    HALF_OPEN --a probe succeeds--> CLOSED
    HALF_OPEN --a probe fails--> OPEN (a new opened_at, so a new full cooldown)

The script that makes a transition reports it, and only that caller logs it, so each transition is
logged exactly once however many workers race through it.

**Calls in flight.** A breaker learns of a failure only when the call returns; when a platform starts
timing out, a CLOSED breaker would let every worker thread send a call before the first timeout is
counted. So admission also takes one of ``max_in_flight`` slots per platform, shared by all workers: a
sorted set ``<prefix><platform>:inflight`` of call ids scored by lease expiry (Redis time), taken in the
same script that admits the call and handed back by the script that records its outcome. Expired leases
are purged on every admission, so a slot held by a killed worker frees itself after
``in_flight_lease_seconds``. A call refused for want of a slot never reaches the platform
(:data:`IN_FLIGHT_FULL`; the fetcher waits for a slot within its budget, then defers).

**Slow calls.** A call that succeeds but took longer than ``slow_call_seconds`` is recorded as a failure
(Resilience4j's ``slowCallDurationThreshold``): a platform slowing down towards its timeouts trips the
breaker before every call times out.

If Redis is unreachable the breaker admits every call (state ``UNKNOWN``): losing the breaker must
degrade protection, never stop reconciliation.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from reconcile_project.config import CircuitBreakerSettings

logger = logging.getLogger("platforms.breaker")

CLOSED = "CLOSED"
OPEN = "OPEN"
HALF_OPEN = "HALF_OPEN"
#: Reported when Redis cannot be asked; calls are admitted.
UNKNOWN = "UNKNOWN"
#: ``Admission.reason`` when the call was refused because ``max_in_flight`` calls are already in flight.
IN_FLIGHT_FULL = "in_flight"

RedisSource = redis.Redis | Callable[[], redis.Redis]
#: ``hook(platform, from_state, to_state)``; called once per transition, in the process that made it.
TransitionHook = Callable[[str, str, str], None]

_TRANSITION_MESSAGES = {OPEN: "circuit_opened", HALF_OPEN: "circuit_half_open", CLOSED: "circuit_closed"}

# Shared Lua prologue. Floats are formatted with %.6f because Lua's default number-to-string keeps
# only 14 significant digits, which would cut epoch seconds to ~0.1 ms and, worse, a float returned
# to Redis as a number is truncated to an integer.
_LUA_PROLOGUE = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.6f', x) end
local h = redis.call('HMGET', key, 'state', 'failures', 'opened_at', 'probes', 'half_open_at')
local state = h[1] or 'CLOSED'
local failures = tonumber(h[2]) or 0
"""

# Every script gets KEYS: hash, index set, in-flight sorted set.
# A slot: the call id in the sorted set, scored by its lease's expiry. Taking one first purges expired
# leases (the slots of workers that died mid-call). Returns '' when taken, else the seconds until the
# first lease expires (the latest a slot can free itself).
_TAKE_SLOT = """
local function take_slot()
  local cap = tonumber(ARGV[5])
  local lease = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now))
  if redis.call('ZCARD', KEYS[3]) >= cap then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return fmt(math.max(0, tonumber(first[2]) - now))
  end
  redis.call('ZADD', KEYS[3], fmt(now + lease), ARGV[7])
  redis.call('EXPIRE', KEYS[3], math.ceil(lease) + 1)
  return ''
end
"""

# ARGV: cooldown, probe limit, probe timeout, platform, max in flight, lease, call id.
# Returns {admitted, state, probe, retry_after ('' if none), transitioned_to_half_open, reason}.
_BEFORE_CALL = (
    _LUA_PROLOGUE
    + _TAKE_SLOT
    + """
local cooldown = tonumber(ARGV[1])
local probe_limit = tonumber(ARGV[2])
local probe_timeout = tonumber(ARGV[3])
if state == 'CLOSED' then
  -- Register the platform once so snapshot() can list it.
  if not h[1] then
    redis.call('HSET', key, 'state', 'CLOSED', 'failures', 0, 'probes', 0)
    redis.call('SADD', KEYS[2], ARGV[4])
  end
  local wait = take_slot()
  if wait ~= '' then
    return {0, 'CLOSED', 0, wait, 0, 'in_flight'}
  end
  return {1, 'CLOSED', 0, '', 0, ''}
end
local transitioned = 0
local probes = tonumber(h[4]) or 0
local half_open_at = tonumber(h[5]) or now
if state == 'OPEN' then
  local remaining = (tonumber(h[3]) or 0) + cooldown - now
  if remaining > 0 then
    return {0, 'OPEN', 0, fmt(remaining), 0, ''}
  end
  probes = 0
  half_open_at = now
  redis.call('HSET', key, 'state', 'HALF_OPEN', 'probes', 0, 'half_open_at', fmt(now))
  transitioned = 1
elseif probes >= probe_limit and now - half_open_at >= probe_timeout then
  -- Every probe slot is taken and none reported back within the timeout: the probing workers died.
  -- Open a fresh probe window instead of staying half-open forever.
  probes = 0
  half_open_at = now
  redis.call('HSET', key, 'probes', 0, 'half_open_at', fmt(now))
end
if probes < probe_limit then
  local wait = take_slot()
  if wait ~= '' then
    return {0, 'HALF_OPEN', 0, wait, transitioned, 'in_flight'}
  end
  redis.call('HSET', key, 'probes', probes + 1)
  return {1, 'HALF_OPEN', 1, '', transitioned, ''}
end
return {0, 'HALF_OPEN', 0, fmt(math.max(0, half_open_at + probe_timeout - now)), transitioned, ''}
"""
)

# ARGV: threshold, is_probe, platform, call id ('' if none).
# Returns {state, transitioned, failures, previous state}.
_RECORD_FAILURE = (
    _LUA_PROLOGUE
    + """
local threshold = tonumber(ARGV[1])
local is_probe = ARGV[2] == '1'
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[3], ARGV[4]) end
if state == 'CLOSED' then
  failures = redis.call('HINCRBY', key, 'failures', 1)
  redis.call('SADD', KEYS[2], ARGV[3])
  if failures >= threshold then
    redis.call('HSET', key, 'state', 'OPEN', 'opened_at', fmt(now), 'probes', 0)
    redis.call('HDEL', key, 'half_open_at')
    return {'OPEN', 1, failures, 'CLOSED'}
  end
  return {'CLOSED', 0, failures, 'CLOSED'}
end
-- Only a probe's failure re-opens: a call admitted while CLOSED that fails late says nothing new.
if state == 'HALF_OPEN' and is_probe then
  redis.call('HSET', key, 'state', 'OPEN', 'opened_at', fmt(now), 'probes', 0)
  redis.call('HDEL', key, 'half_open_at')
  return {'OPEN', 1, failures, 'HALF_OPEN'}
end
return {state, 0, failures, state}
"""
)

# ARGV: is_probe, call id ('' if none). Returns {state, transitioned}.
_RECORD_SUCCESS = (
    _LUA_PROLOGUE
    + """
local is_probe = ARGV[1] == '1'
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[3], ARGV[2]) end
if state == 'HALF_OPEN' and is_probe then
  redis.call('HSET', key, 'state', 'CLOSED', 'failures', 0, 'probes', 0)
  redis.call('HDEL', key, 'opened_at', 'half_open_at')
  return {'CLOSED', 1}
end
-- Skip the write when there is nothing to reset: this is the hot path of a healthy platform.
if state == 'CLOSED' and failures ~= 0 then
  redis.call('HSET', key, 'failures', 0)
end
return {state, 0}
"""
)

# ARGV: is_probe, call id ('' if none). A call that ended without a verdict (rate-limited, not found, or
# never made) hands back its in-flight slot, and a probe its probe slot, so that another worker can
# probe instead of the slot being lost until the probe timeout.
_RELEASE = (
    _LUA_PROLOGUE
    + """
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[3], ARGV[2]) end
local probes = tonumber(h[4]) or 0
if ARGV[1] == '1' and state == 'HALF_OPEN' and probes > 0 then
  redis.call('HSET', key, 'probes', probes - 1)
end
return state
"""
)

# ARGV: platform. Returns the previous state. In-flight slots are left alone: those calls are still out.
_RESET = (
    _LUA_PROLOGUE
    + """
redis.call('HSET', key, 'state', 'CLOSED', 'failures', 0, 'probes', 0)
redis.call('HDEL', key, 'opened_at', 'half_open_at')
redis.call('SADD', KEYS[2], ARGV[1])
return state
"""
)


@dataclass(frozen=True)
class Admission:
    """The breaker's answer to "may I call the platform now?"; hand it back to ``record_*``."""

    admitted: bool
    state: str
    #: True when this call is one of the HALF_OPEN probes; its outcome decides the next state.
    probe: bool = False
    #: When rejected: seconds until the breaker may admit again (remaining cooldown or probe window,
    #: or, refused for want of an in-flight slot, until the first slot's lease runs out at the latest).
    retry_after_seconds: float | None = None
    #: The call's in-flight slot (None when Redis could not be asked); handed back by ``record_*``/``release``.
    call_id: str | None = None
    #: Why a call was refused: :data:`IN_FLIGHT_FULL`, or None (the breaker's state refused it).
    reason: str | None = None


class RedisSkipped(redis.ConnectionError):
    """Raised instead of contacting Redis while a recent failure's back-off window lasts."""


class RedisGuard:
    """The Redis connection of a breaker or limiter, with a short memory of failures.

    After a failure every operation skips Redis for ``retry_seconds``: a hung Redis would otherwise
    cost each call a full socket timeout, several times per fetch. The warning is rate-limited too,
    with a count of what it did not log, so an outage does not bury the log under one line per call.
    """

    def __init__(
        self,
        source: RedisSource,
        log: logging.Logger,
        message: str,
        *,
        retry_seconds: float = 1.0,
        warn_interval_seconds: float = 5.0,
    ) -> None:
        self._source = source
        self._log = log
        self._message = message
        self._retry_seconds = retry_seconds
        self._warn_interval = warn_interval_seconds
        self._lock = threading.Lock()
        self._down_until = -float("inf")
        self._last_warning = -float("inf")
        self._suppressed = 0

    def client(self) -> redis.Redis:
        if time.monotonic() < self._down_until:
            raise RedisSkipped("Redis failed moments ago; not retrying yet")
        source = self._source
        return source if isinstance(source, redis.Redis) else source()

    def failed(self, platform: str | None, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if not isinstance(exc, RedisSkipped):
                self._down_until = now + self._retry_seconds
            if now - self._last_warning < self._warn_interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last_warning = now
        self._log.warning(
            self._message,
            extra={"platform": platform, "error": f"{type(exc).__name__}: {exc}", "suppressed": suppressed},
        )


class CircuitBreaker:
    """One breaker per platform, shared through Redis by every thread and process that uses the prefix.

    ``redis_source`` is a client or a zero-argument factory (e.g. ``reconcile_project.redis.get_redis``),
    called on each operation, so a breaker can be built before Redis or settings are ready.
    ``probe_timeout_seconds`` (default: the cooldown) bounds how long HALF_OPEN waits for probes that
    never report back (a worker killed mid-call) before it lets new probes through.
    """

    def __init__(
        self,
        redis_source: RedisSource,
        settings: CircuitBreakerSettings,
        key_prefix: str = "cb:",
        *,
        probe_timeout_seconds: float | None = None,
        warn_interval_seconds: float = 5.0,
        redis_retry_seconds: float = 1.0,
    ) -> None:
        self._redis = RedisGuard(
            redis_source,
            logger,
            "circuit_breaker_redis_unavailable: admitting calls without a breaker",
            retry_seconds=redis_retry_seconds,
            warn_interval_seconds=warn_interval_seconds,
        )
        self.settings = settings
        self.key_prefix = key_prefix
        self.probe_timeout_seconds = (
            probe_timeout_seconds if probe_timeout_seconds is not None else settings.open_cooldown_seconds
        )
        self.index_key = f"{key_prefix}_index"
        #: Metrics and alerting subscribe here; hooks must be quick and must not raise (errors are logged).
        self.transition_hooks: list[TransitionHook] = []
        self._scripts: dict[str, Script] | None = None
        self._scripts_lock = threading.Lock()

    # --- public API -------------------------------------------------------------------------------

    def before_call(self, platform: str) -> Admission:
        s = self.settings
        call_id = uuid.uuid4().hex
        try:
            admitted, state, probe, retry_after, transitioned, reason = self._run(
                "before_call",
                platform,
                [
                    s.open_cooldown_seconds,
                    s.half_open_probe_count,
                    self.probe_timeout_seconds,
                    platform,
                    s.max_in_flight,
                    s.in_flight_lease_seconds,
                    call_id,
                ],
            )
        except redis.RedisError as exc:
            self._redis.failed(platform, exc)
            return Admission(admitted=True, state=UNKNOWN)
        state = _text(state)
        if int(transitioned):
            self._transitioned(platform, OPEN, HALF_OPEN)
        retry = _text(retry_after)
        admitted = bool(int(admitted))
        return Admission(
            admitted=admitted,
            state=state,
            probe=bool(int(probe)),
            retry_after_seconds=float(retry) if retry else None,
            call_id=call_id if admitted else None,
            reason=_text(reason) or None,
        )

    def record_success(self, platform: str, admission: Admission, *, duration_seconds: float | None = None) -> None:
        """The call succeeded; if it took longer than ``slow_call_seconds`` it counts as a failure."""
        if duration_seconds is not None and duration_seconds > self.settings.slow_call_seconds:
            logger.warning(
                "slow_call",
                extra={
                    "platform": platform,
                    "duration_ms": round(duration_seconds * 1000, 2),
                    "slow_call_seconds": self.settings.slow_call_seconds,
                },
            )
            self.record_failure(platform, admission)
            return
        try:
            state, transitioned = self._run("record_success", platform, [int(admission.probe), admission.call_id or ""])
        except redis.RedisError as exc:
            self._redis.failed(platform, exc)
            return
        if int(transitioned):
            self._transitioned(platform, HALF_OPEN, _text(state))

    def record_failure(self, platform: str, admission: Admission) -> None:
        """Count a platform failure; the caller decides what is one (``PlatformError.counts_as_failure``)."""
        try:
            state, transitioned, failures, previous = self._run(
                "record_failure",
                platform,
                [self.settings.failure_threshold, int(admission.probe), platform, admission.call_id or ""],
            )
        except redis.RedisError as exc:
            self._redis.failed(platform, exc)
            return
        if int(transitioned):
            self._transitioned(platform, _text(previous), _text(state), failures=int(failures))

    def release(self, platform: str, admission: Admission) -> None:
        """End an admitted call that gave no verdict on the platform's health (rate-limited, not found,
        or never made because our own rate limiter said no): its in-flight slot, and a probe's probe
        slot, go back."""
        if not admission.probe and admission.call_id is None:
            return
        try:
            self._run("release", platform, [int(admission.probe), admission.call_id or ""])
        except redis.RedisError as exc:
            self._redis.failed(platform, exc)

    def state(self, platform: str) -> str:
        """The stored state. OPEN stays OPEN after its cooldown until the next ``before_call`` moves it."""
        try:
            value = self._redis.client().hget(self._key(platform), "state")
        except redis.RedisError as exc:
            self._redis.failed(platform, exc)
            return UNKNOWN
        return _text(value) if value is not None else CLOSED

    def snapshot(self, platforms: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """``{platform: {failures, state, opened_at, half_open_probes, in_flight}}`` (the runbook's shape,
        plus the calls holding an in-flight slot, leases not yet purged included).

        Without ``platforms``: every platform this prefix has seen. On a Redis error the named platforms
        are reported as UNKNOWN (and none when no names were given), so a health page still renders.
        """
        names: list[str] = [] if platforms is None else list(platforms)
        try:
            client = self._redis.client()
            if platforms is None:
                names = sorted(_text(n) for n in client.smembers(self.index_key))
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hmget(self._key(name), "state", "failures", "opened_at", "probes")
                pipe.zcard(self._in_flight_key(name))
            replies: Sequence[Any] = pipe.execute()
        except redis.RedisError as exc:
            self._redis.failed(None, exc)
            return {
                name: {"failures": 0, "state": UNKNOWN, "opened_at": None, "half_open_probes": 0, "in_flight": 0}
                for name in names
            }
        result: dict[str, dict[str, Any]] = {}
        for index, name in enumerate(names):
            state, failures, opened_at, probes = replies[2 * index]
            result[name] = {
                "failures": int(failures or 0),
                "state": _text(state) if state is not None else CLOSED,
                "opened_at": float(opened_at) if opened_at is not None else None,
                "half_open_probes": int(probes or 0),
                "in_flight": int(replies[2 * index + 1] or 0),
            }
        return result

    def reset(self, platform: str) -> None:
        """Force CLOSED with no failures (operator action); logged as a transition if it was not CLOSED."""
        try:
            previous = _text(self._run("reset", platform, [platform]))
        except redis.RedisError as exc:
            self._redis.failed(platform, exc)
            return
        if previous != CLOSED:
            self._transitioned(platform, previous, CLOSED, reason="reset")

    # --- internals --------------------------------------------------------------------------------

    def _key(self, platform: str) -> str:
        return f"{self.key_prefix}{platform}"

    def _in_flight_key(self, platform: str) -> str:
        return f"{self.key_prefix}{platform}:inflight"

    def _run(self, name: str, platform: str, args: list[Any]) -> Any:
        client = self._redis.client()
        if self._scripts is None:
            with self._scripts_lock:
                if self._scripts is None:
                    # register_script only hashes locally; redis-py loads the script on NOSCRIPT itself,
                    # so a Redis restart (script cache flushed) is handled.
                    self._scripts = {
                        "before_call": client.register_script(_BEFORE_CALL),
                        "record_failure": client.register_script(_RECORD_FAILURE),
                        "record_success": client.register_script(_RECORD_SUCCESS),
                        "release": client.register_script(_RELEASE),
                        "reset": client.register_script(_RESET),
                    }
        keys = [self._key(platform), self.index_key, self._in_flight_key(platform)]
        return self._scripts[name](keys=keys, args=args, client=client)

    def _transitioned(self, platform: str, from_state: str, to_state: str, **details: Any) -> None:
        message = _TRANSITION_MESSAGES[to_state]
        level = logging.WARNING if to_state == OPEN else logging.INFO
        logger.log(
            level, message, extra={"platform": platform, "from_state": from_state, "to_state": to_state, **details}
        )
        for hook in list(self.transition_hooks):
            try:
                hook(platform, from_state, to_state)
            except Exception:
                logger.exception("circuit_transition_hook_failed", extra={"platform": platform})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@functools.cache
def get_breaker() -> CircuitBreaker:
    """The process's breaker, configured from ``settings.CIRCUIT_BREAKER`` on ``settings.REDIS_URL``."""
    from django.conf import settings

    from reconcile_project.redis import get_redis

    config = settings.CIRCUIT_BREAKER
    if not isinstance(config, CircuitBreakerSettings):
        # A plain dict (e.g. from override_settings in a test) validates the same way.
        config = CircuitBreakerSettings.model_validate(config)
    return CircuitBreaker(get_redis, config)
