"""The enforcer: identify the caller, then decide a request with one script call.

``EnforcerCore`` holds everything but I/O; ``Enforcer`` runs it on asyncio (ASGI)
and ``SyncEnforcer`` on threads (WSGI), with the same script and the same answers.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Self

import redis
import redis.asyncio as aioredis
from redis.cluster import RedisCluster

from . import metrics
from .apikeys import ApiKeyRecord
from .cluster import AsyncClusterRunner
from .cluster_sync import SyncClusterRunner
from .connect import ControlClient, async_runner
from .contract import DECIDE, SETTLE
from .decision import Decision, Settlement
from .fallback import FallbackLimiter
from .identity import ClientIPResolver, Identity, bounded
from .live import LiveCache, LiveState, SyncLiveState
from .logs import get_logger
from .outage import OutageLog
from .overrides import Override
from .plan import Plan, RouteLimits, compile_plan
from .policy import Policy
from .scripts import LuaScript, script
from .settings import EnforcerSettings
from .shards import GiveBack, group_args, merge_replies
from .tiers import with_live_tiers
from .topology import async_client, parse_redis_url, sync_client
from .transport import SyncScriptRunner

__all__ = ["Enforcer", "EnforcerCore", "SyncEnforcer"]

log = get_logger("ratewarden.enforcer")

_REDIS_ERRORS = (redis.RedisError, OSError, TimeoutError, ConnectionError)
_MIN_LOCAL_DENY_S = 0.05
_MAX_LOCAL_DENIALS = 50_000


class _ScriptCall(NamedTuple):
    """A decision waiting for Redis: the script's keys and arguments, and what reads its reply."""

    identity: Identity
    plan: Plan
    keys: list[str]
    args: tuple[object, ...]
    rid: str
    sent_at: float


def _server(redis_url: str) -> str:
    """Where ``redis_url`` points, for logs (no credentials)."""
    try:
        return parse_redis_url(redis_url).describe()
    except ValueError:
        return "(unparsable)"  # the Enforcer refuses it when it builds its clients


class EnforcerCore:
    """Plans, local denials, fallback and decisions from script replies: no I/O.

    Set ``clock_offset_s`` only in tests, to move the scripts' clock forward. With
    ``time_source="app"`` the scripts read ``clock()`` (unix seconds; tests may replace it).
    """

    live: LiveCache  # narrowed by Enforcer and SyncEnforcer to the kind that does their I/O

    def __init__(self, policy: Policy, settings: EnforcerSettings | None = None) -> None:
        self.file_policy = policy  # as loaded; run-time tiers are laid over it
        self.policy = policy
        self.settings = settings = settings or EnforcerSettings()
        self.ips = ClientIPResolver(settings.trusted_proxies, settings.ipv6_prefix)
        self.fallback = FallbackLimiter(settings.fallback_share)
        self.stats = metrics.DecisionStats(policy.tiers)
        # "redis_unavailable" once per outage, then rarely: requests retry every redis_retry_after_s
        self.outage = OutageLog(log, "redis", server=_server(settings.redis_url), setting="RATEWARDEN_REDIS_URL")
        self._secret = settings.api_key_secret.get_secret_value().encode() if settings.api_key_secret else None
        self._script = script("decide")
        self._plans: dict[tuple[object, ...], Plan] = {}
        self._denied: dict[str, tuple[float, int]] = {}
        self._generation = -1
        self._tiers_generation = 0
        self._redis_down_until = 0.0  # decide without Redis until then (one server failed)
        self._outage_until = 0.0  # the last failure + the retry pause: "recovered" is logged after it
        # a cluster runner's split: keys grouped by node (None: one server, whose failure pauses every
        # decision; a cluster's runner fails only the failed node's calls)
        self._node_split: Callable[[Sequence[str]], list[list[int]] | None] | None = None
        self._rid_prefix = secrets.token_hex(4) + ":"
        self._rids = itertools.count()
        self._offset_arg = b"0"
        self.clock: Callable[[], float] = time.time
        self.started = False

    @classmethod
    def from_settings(cls, settings: EnforcerSettings | None = None) -> Self:
        """An enforcer for ``settings.policy_file`` (required) and ``settings.redis_url``."""
        from .loader import load_policy

        settings = settings or EnforcerSettings()
        if settings.policy_file is None:
            raise ValueError("no policy: set RATEWARDEN_POLICY_FILE or pass a Policy to Enforcer()")
        return cls(load_policy(settings.policy_file), settings)

    @property
    def clock_offset_s(self) -> float:
        """Seconds added to the scripts' clock (tests only; setting it forgets local denials)."""
        return int(self._offset_arg) / 1_000_000

    @clock_offset_s.setter
    def clock_offset_s(self, seconds: float) -> None:
        self._offset_arg = str(int(seconds * 1_000_000)).encode()
        self._denied.clear()

    # -- identity ----------------------------------------------------------

    def _identity(self, ip: str, record: ApiKeyRecord | None, user: str | None) -> Identity:
        """The caller: its API key's record if the key is live, else its user, else its IP."""
        self._follow_live()  # a tier added at run time counts from the first request that names it
        policy = self.policy
        if record is not None:
            tier = record.tier if record.tier in policy.tiers else policy.default_tier
            identity = Identity(f"k:{record.id}", tier, ip, key_id=record.id, owner=record.owner)
        elif user:
            user = bounded(user)
            identity = Identity(f"u:{user}", policy.default_tier, ip, user=user)
        else:
            identity = Identity(f"ip:{ip}", policy.anonymous_tier, ip)
        override = self.live.override(identity.client_id)
        if override is not None and override.tier in policy.tiers:
            identity.tier = override.tier
        return identity

    # -- deciding ----------------------------------------------------------

    def plan(self, tier: str, route: str, route_limits: RouteLimits | None = None,
             override: Override | None = None) -> Plan:
        """The (cached) plan for a tier on a route, with a client's custom limits if any."""
        custom = override.custom_tier(self.policy.tiers[tier]) if override is not None else None
        cache_key = (tier, route, id(route_limits), id(override) if custom else None)
        plan = self._plans.get(cache_key)
        if plan is None:
            plan = compile_plan(self.policy, tier, route, route_limits, custom)
            self._plans[cache_key] = plan
        return plan

    def _begin(self, identity: Identity, route: str, route_limits: RouteLimits | None) -> Decision | _ScriptCall:
        """A decision made without Redis, or the script call that will make it."""
        started = time.monotonic()
        prepared = self._prepare(identity, route, route_limits, started)
        if isinstance(prepared, Decision):
            if not prepared.allowed or prepared.degraded:  # what ratewarden_decisions_total counts
                self.stats.observe(prepared, time.monotonic() - started)
            return prepared
        plan, keys, sent_at = prepared
        rid = self._rid_prefix + str(next(self._rids))
        args = (DECIDE, self._now_arg(), self._offset_arg, plan.cost, rid, b"", *plan.script_args)
        return _ScriptCall(identity, plan, keys, args, rid, sent_at)

    def _now_arg(self) -> str:
        return str(int(self.clock() * 1_000_000)) if self.settings.time_source == "app" else ""

    def _split(self, keys: Sequence[str]) -> list[list[int]] | None:
        """Indices of ``keys`` grouped by the Redis node serving them; None when one node serves all."""
        return self._node_split(keys) if self._node_split is not None else None

    def _node_calls(self, call: _ScriptCall,
                    nodes: list[list[int]]) -> list[tuple[LuaScript, list[str], tuple[object, ...]]]:
        """The deciding script call of each node's rules."""
        return [(self._script, [call.keys[i] for i in node], group_args(call.args, call.plan, node))
                for node in nodes]

    def _merged(self, call: _ScriptCall, nodes: list[list[int]], results: Sequence[Any],
                send: Callable[..., None]) -> tuple[Sequence[int] | BaseException,
                                                    list[tuple[list[str], tuple[object, ...]]]]:
        """One reply from the nodes' (or the first error), and the refund calls of the nodes that
        admitted a request another denied (their leases released through ``send``)."""
        reply, give_back = merge_replies(call.plan, nodes, results)
        return reply, self._give_back(call, give_back, send)

    def _after_response(self, decision: Decision, status: int,
                        send: Callable[..., None]) -> list[tuple[list[str], tuple[object, ...]]]:
        """Free ``decision``'s concurrency slots through ``send``; returns the script calls (one per
        Redis node) that count or refund its response-aware rules a response with ``status`` matches."""
        for key, rid in decision.leases:
            if rid:
                send("ZREM", key, rid)
            else:
                self.fallback.release(key)
        settle = decision.settle
        if settle is None:
            return []
        matched = settle.plan.settlement(status)
        if not matched:
            return []
        plan = settle.plan
        head = (SETTLE, self._now_arg(), self._offset_arg, plan.cost, settle.rid, settle.decided_at_us)
        nodes = self._split([settle.keys[i] for i in matched])
        groups = [[matched[i] for i in node] for node in nodes] if nodes else [matched]
        return [([settle.keys[i] for i in group], (*head, *plan.rule_args(group))) for group in groups]

    def _give_back(self, call: _ScriptCall, give_back: list[GiveBack],
                   send: Callable[..., None]) -> list[tuple[list[str], tuple[object, ...]]]:
        """For a request some Redis nodes admitted but that is denied: release their leases through
        ``send``; returns the script calls that refund what they counted."""
        calls = []
        plan = call.plan
        for node in give_back:
            for i in node.leases:
                send("ZREM", call.keys[i], call.rid)
            if node.refund:
                args = (SETTLE, self._now_arg(), self._offset_arg, plan.cost, call.rid, node.decided_at_us,
                        *plan.refund_args(node.refund))
                calls.append(([call.keys[i] for i in node.refund], args))
        if calls:
            metrics.REFUNDS.inc()
        return calls

    def _end(self, call: _ScriptCall, reply: list[int] | None, error: BaseException | None = None) -> Decision:
        """The decision from the script's ``reply``, or made without Redis if the call raised ``error``."""
        if error is not None:
            self._redis_failed(error)
            decision = self._degraded(call.plan, call.keys, call.identity)
        else:
            assert reply is not None
            if self._outage_until and time.monotonic() >= self._outage_until:
                self._outage_until = self._redis_down_until = 0.0
                self.outage.succeeded()
            decision = self._from_reply(reply, call.plan, call.keys, call.identity, call.rid, call.sent_at)
        self.stats.observe(decision, time.monotonic() - call.sent_at)
        return decision

    def _follow_live(self) -> None:
        """Take in what changed at run time: overrides void local denials and custom plans, tiers every plan."""
        live = self.live
        if live.generation != self._generation:
            self._generation = live.generation
            self._denied.clear()
            self._plans = {k: v for k, v in self._plans.items() if k[3] is None}
            if live.tiers_generation != self._tiers_generation:
                self._tiers_generation = live.tiers_generation
                self.policy = with_live_tiers(self.file_policy, live.tiers)
                self._plans = {}
                self.stats.add(self.policy.tiers)

    def _prepare(self, identity: Identity, route: str, route_limits: RouteLimits | None,
                 sent_at: float) -> Decision | tuple[Plan, list[str], float]:
        """A decision made without Redis, or what to ask Redis: (plan, keys, ``sent_at``, the monotonic
        time the call goes out, which local denials are also judged at)."""
        live = self.live
        self._follow_live()
        override = live.override(identity.client_id) if live.overrides else None
        if override is not None:
            if override.allow:
                return Decision.unlimited(identity, route)
            if override.block:
                return self._blocked(identity, route, override)
        plan = self.plan(identity.tier, route, route_limits, override)
        if not plan.rules:
            return Decision.unlimited(identity, route, plan.cost, plan.exempt)
        keys = plan.keys(identity)
        if self._denied:
            denial = self._denied_locally(plan, keys, identity, sent_at)
            if denial is not None:
                return denial
        if sent_at < self._redis_down_until:
            return self._degraded(plan, keys, identity)
        return plan, keys, sent_at

    def _from_reply(self, reply: list[int], plan: Plan, keys: list[str], identity: Identity, rid: str,
                    sent_at: float) -> Decision:
        (allowed, decider, now_us, retry_us, head, remaining, reset_us,  # contract.Reply's order
         shadow, shadow_retry_us, quota, quota_remaining, quota_reset_us) = reply
        rules = plan.rules
        if allowed:
            rule = rules[head - 1] if head else None
            # a bucket's burst lets remaining exceed the limit RateLimit-Policy states; report at most that
            decision = Decision.admitted(
                identity, plan, now_us, rule, min(remaining, rule.limit) if rule else 0, reset_us / 1e6,
                leases=tuple((keys[i], rid) for i in plan.lease_indices) if plan.lease_indices else (),
                quota=(rules[quota - 1].name, quota_remaining, quota_reset_us / 1e6) if quota else None,
                settle=Settlement(plan, keys, rid, now_us) if plan.response_aware else None)
            if shadow:  # admitted, but a shadow rule would have denied it
                self.stats.shadow_denied()
                decision.shadow_denied = rules[shadow - 1].name
                decision.shadow_retry_after_s = shadow_retry_us / 1e6
            return decision
        rule = rules[decider - 1]
        retry_s = retry_us / 1e6
        if self.settings.local_deny_cache and rule.kind != "concurrency" and retry_s >= _MIN_LOCAL_DENY_S:
            if len(self._denied) >= _MAX_LOCAL_DENIALS:
                self._denied.clear()
            # Redis decided at or after sent_at, so it admits nothing of this cost before sent_at + retry
            self._denied[keys[decider - 1]] = (sent_at + retry_s, plan.cost)
        return Decision.refused(identity, plan, rule, retry_s, now_us)

    def _denied_locally(self, plan: Plan, keys: list[str], identity: Identity, now: float) -> Decision | None:
        for i, key in enumerate(keys):
            entry = self._denied.get(key)
            if entry is None:
                continue
            until, cost = entry
            if until <= now:
                del self._denied[key]
            elif plan.cost >= cost:
                return Decision.refused(identity, plan, plan.rules[i], until - now, int(time.time() * 1e6),
                                        local=True)
        return None

    def _blocked(self, identity: Identity, route: str, override: Override) -> Decision:
        wait = max(1.0, override.expires_at - time.time()) if override.expires_at else 3600.0
        return Decision.blocked(identity, route, override.source, wait, int(time.time() * 1e6))

    def _degraded(self, plan: Plan, keys: list[str], identity: Identity) -> Decision:
        now_us = int(time.time() * 1e6)
        if plan.fail_mode == "closed":
            return Decision.unavailable(identity, plan, self.settings.redis_retry_after_s, now_us)
        allowed, index, wait = self.fallback.decide(plan, keys)
        if allowed:
            leases = tuple((keys[i], "") for i in plan.lease_indices)
            return Decision.admitted(identity, plan, now_us, leases=leases, degraded=True)
        return Decision.refused(identity, plan, plan.rules[index], wait, now_us, degraded=True)

    def _redis_failed(self, exc: BaseException) -> None:
        metrics.REDIS_FAILURES.inc()
        self.outage.failed(exc)
        self._outage_until = time.monotonic() + self.settings.redis_retry_after_s
        if self._node_split is None:
            self._redis_down_until = self._outage_until


class Enforcer(EnforcerCore):
    """Decides requests for one asyncio process against the shared Redis.

    ``await start()`` before use (the middleware does it); ``await aclose()`` at the end.
    """

    live: LiveState

    def __init__(self, policy: Policy, settings: EnforcerSettings | None = None, *,
                 client: aioredis.Redis | None = None) -> None:
        super().__init__(policy, settings)
        settings = self.settings
        topology = parse_redis_url(settings.redis_url)
        self.runner = async_runner(topology, settings.redis_budget_ms / 1000, settings.redis_retry_after_s)
        if isinstance(self.runner, AsyncClusterRunner):
            self._node_split = self.runner.split
        if client is None and topology.kind != "cluster":
            client = async_client(topology, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.control = ControlClient(client, self.runner)
        self.live = LiveState(self.control, self.runner, self._secret, topology.describe())

    async def start(self) -> None:
        """Load run-time state and follow changes. Tolerates Redis being down."""
        if self.started:
            return
        self.started = True
        try:
            if isinstance(self.runner, AsyncClusterRunner):
                await self.runner.refresh()  # the slot map, so the first requests go to the right nodes
            await self.live.start()
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)  # the change feed keeps trying and loads state once Redis answers

    async def aclose(self) -> None:
        """Stop following run-time changes and close every Redis connection."""
        await self.live.aclose()
        await self.runner.aclose()
        await self.control.aclose()
        self.started = False

    async def identify(self, *, ip: str, api_key: str | None = None, user: str | None = None) -> Identity:
        """The caller: its API key's record if the key is live, else its user, else its IP."""
        record = None
        if api_key:
            try:
                record = await self.live.api_key(api_key)
            except _REDIS_ERRORS:
                record = None  # an unverifiable key counts as anonymous, never as unlimited
        return self._identity(ip, record, user)

    async def decide(self, identity: Identity, route: str, route_limits: RouteLimits | None = None) -> Decision:
        """Allow or deny one request of ``identity`` on ``route`` (a route template)."""
        call = self._begin(identity, route, route_limits)
        if isinstance(call, Decision):
            return call
        nodes = self._split(call.keys)
        try:
            if nodes is None:
                reply = await self.runner.call(self._script, call.keys, call.args)
            else:
                reply = await self._decide_on_nodes(call, nodes)
        except _REDIS_ERRORS as exc:
            return self._end(call, None, exc)
        return self._end(call, reply)

    async def _decide_on_nodes(self, call: _ScriptCall, nodes: list[list[int]]) -> Sequence[int]:
        """Each node decides its rules at once; a denial (or failure) anywhere denies the request,
        and what the other nodes counted is given back off the request path."""
        results = await asyncio.gather(*(self.runner.call(*node_call) for node_call in self._node_calls(call, nodes)),
                                       return_exceptions=True)
        reply, refunds = self._merged(call, nodes, results, self.runner.command)
        for refund in refunds:
            self.runner.fire(self._script, *refund)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def finish(self, decision: Decision, status: int) -> None:
        """The response to ``decision`` ended with ``status``: free its concurrency slots and
        count or refund its response-aware rules. Queued on the pipelined connection, not awaited."""
        for call in self._after_response(decision, status, self.runner.command):
            self.runner.fire(self._script, *call)


class SyncEnforcer(EnforcerCore):
    """Decides requests from threads (WSGI) with a pooled sync client; same script, same answers.

    ``start()`` before use; ``close()`` at the end. Safe to share between threads.
    """

    live: SyncLiveState

    def __init__(self, policy: Policy, settings: EnforcerSettings | None = None, *,
                 client: redis.Redis | RedisCluster | None = None) -> None:
        super().__init__(policy, settings)
        settings = self.settings
        budget = settings.redis_budget_ms / 1000
        topology = parse_redis_url(settings.redis_url)
        self.client = client or sync_client(topology, socket_timeout=max(budget, 0.05),
                                            socket_connect_timeout=max(budget, 0.05))
        self.runner: SyncScriptRunner | SyncClusterRunner
        if isinstance(self.client, RedisCluster):
            self.runner = SyncClusterRunner(self.client)  # redis-py's cluster client fails a dead node's calls
            self._node_split = self.runner.split
        else:
            self.runner = SyncScriptRunner(self.client)
        self.live = SyncLiveState(sync_client(topology, socket_timeout=1.0, socket_connect_timeout=1.0), self._secret,
                                  topology.describe())
        self._lock = threading.Lock()
        self._settlements: queue.SimpleQueue[tuple[list[str], tuple[object, ...]] | None] = queue.SimpleQueue()
        self._settler: threading.Thread | None = None

    def start(self) -> None:
        """Load run-time state and follow changes in a thread (once). Tolerates Redis being down."""
        with self._lock:
            if self.started:
                return
            self.started = True
            try:
                self.live.start()
            except _REDIS_ERRORS as exc:
                self._redis_failed(exc)

    def close(self) -> None:
        """Settle what is queued (waiting at most 2 s), stop following changes and close the Redis client."""
        with self._lock:
            settler, self._settler = self._settler, None
        if settler is not None:
            self._settlements.put(None)  # settle what is queued, then stop
            settler.join(timeout=2)
        self.live.close()
        self.client.close()
        self.started = False

    def identify(self, *, ip: str, api_key: str | None = None, user: str | None = None) -> Identity:
        """The caller: its API key's record if the key is live, else its user, else its IP."""
        record = None
        if api_key:
            try:
                record = self.live.api_key(api_key)
            except _REDIS_ERRORS:
                record = None
        return self._identity(ip, record, user)

    def decide(self, identity: Identity, route: str, route_limits: RouteLimits | None = None) -> Decision:
        """Allow or deny one request of ``identity`` on ``route`` (a route template)."""
        call = self._begin(identity, route, route_limits)
        if isinstance(call, Decision):
            return call
        runner = self.runner
        nodes = self._split(call.keys)
        try:
            if nodes is None:
                reply = runner.call(self._script, call.keys, call.args)
            else:
                assert isinstance(runner, SyncClusterRunner)
                reply, refunds = self._merged(call, nodes, runner.call_many(self._node_calls(call, nodes)),
                                              runner.command)
                self._settle(refunds)
                if isinstance(reply, BaseException):
                    raise reply
        except _REDIS_ERRORS as exc:
            return self._end(call, None, exc)
        return self._end(call, reply)

    def finish(self, decision: Decision, status: int) -> None:
        """The response to ``decision`` ended with ``status``: free its concurrency slots, and
        count or refund its response-aware rules from a background thread (off the request path)."""
        self._settle(self._after_response(decision, status, self.runner.command))

    def _settle(self, calls: list[tuple[list[str], tuple[object, ...]]]) -> None:
        """Run script calls from the background settler thread (off the request path)."""
        if not calls:
            return
        for call in calls:
            self._settlements.put(call)
        with self._lock:
            if self._settler is None:  # started on first use: most policies never settle
                self._settler = threading.Thread(target=self._settle_forever, name="ratewarden-settle", daemon=True)
                self._settler.start()

    def _settle_forever(self) -> None:
        while (call := self._settlements.get()) is not None:
            try:
                self.runner.call(self._script, *call)
            except _REDIS_ERRORS as exc:  # a lost settlement errs by one request; never fail a response
                log.warning("settle_failed", error=type(exc).__name__)
