"""The operator's window: Prometheus text at /metrics and a JSON verdict at /health, served by aiohttp from the
watcher's own event loop. `/health` is 200 while heads arrive, processing keeps up and the outbox drains; 503
with the reasons otherwise.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from chainwatch import metrics
from chainwatch.config import MetricsConfig
from chainwatch.model import Record

log = structlog.get_logger(__name__)

class OutboxStats(Record, frozen=True, kw_only=True):
    count: int
    oldest_age_seconds: float


class HealthFacts(Record, frozen=True, kw_only=True):
    seconds_since_head: float | None
    head_seen: int
    head_processed: int
    outbox: Mapping[str, OutboxStats]


def verdict(facts: HealthFacts, config: MetricsConfig, *, chain: bool = True, outbox: bool = True) -> list[str]:
    """Why the service is unhealthy (empty: healthy). `chain`: judge the heads and the lag; `outbox`: judge the
    oldest unsent message (a role process judges only what its active roles do)."""
    reasons = []
    if chain:
        reasons += _chain_reasons(facts, config)
    oldest = max((s.oldest_age_seconds for s in facts.outbox.values() if s.count), default=0.0)
    if outbox and oldest > config.max_outbox_age_seconds:
        reasons.append(f"the oldest unsent message waits for {oldest:.0f} s (limit {config.max_outbox_age_seconds:g} s)")
    return reasons


def role_verdict(facts: HealthFacts, config: MetricsConfig, active: Mapping[str, bool]) -> list[str]:
    """A role process: a standby is healthy; an active ingest answers for the heads, an active sender for the
    outbox (workers and the bot have no verdict of their own here yet)."""
    return verdict(facts, config, chain=active.get("ingest", False), outbox=active.get("sender", False))


def _chain_reasons(facts: HealthFacts, config: MetricsConfig) -> list[str]:
    reasons = []
    if facts.seconds_since_head is None or facts.seconds_since_head > config.stall_seconds:
        since = "ever" if facts.seconds_since_head is None else f"{facts.seconds_since_head:.0f} s"
        reasons.append(f"no new head for {since} (limit {config.stall_seconds:g} s)")
    behind = facts.head_seen - facts.head_processed
    if behind > config.max_lag_blocks:
        reasons.append(f"processing is {behind} blocks behind the head (limit {config.max_lag_blocks})")
    return reasons


@asynccontextmanager
async def serving(
    config: MetricsConfig, outbox: Callable[[], Awaitable[Mapping[str, OutboxStats]]], *,
    roles: Callable[[], Mapping[str, bool]] | None = None, name: str | None = None,
) -> AsyncIterator[str]:  # fmt: skip
    """Serves /metrics and /health on `config.listen` for the duration of the block; yields the bound address.

    `roles` (a `chainwatch run --role` process): each role it runs -> whether it is active now; /health then
    reports them and judges only what the active ones do."""

    async def facts() -> HealthFacts:
        stats = await outbox()
        for kind, stat in stats.items():
            metrics.OUTBOX_MESSAGES.labels(kind).set(stat.count)
            metrics.OUTBOX_OLDEST_SECONDS.labels(kind).set(stat.oldest_age_seconds)
        chain = metrics.CHAIN
        since = None if chain.last_head_at is None else time.monotonic() - chain.last_head_at
        return HealthFacts(seconds_since_head=since, head_seen=chain.seen, head_processed=chain.processed, outbox=stats)

    async def metrics_page(request: web.Request) -> web.Response:
        await facts()
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_page(request: web.Request) -> web.Response:
        known = await facts()
        active = None if roles is None else dict(roles())
        reasons = verdict(known, config) if active is None else role_verdict(known, config, active)
        body: dict[str, object] = {
            "status": "ok" if not reasons else "unhealthy",
            "reasons": reasons,
            "head_seen": known.head_seen,
            "head_processed": known.head_processed,
            "seconds_since_head": known.seconds_since_head,
            "outbox": {kind: {"count": s.count, "oldest_age_seconds": round(s.oldest_age_seconds, 3)}
                       for kind, s in known.outbox.items()},
        }  # fmt: skip
        if active is not None:
            body["roles"] = {role: "active" if is_active else "standby" for role, is_active in active.items()}
            body["name"] = name
        return web.json_response(body, status=200 if not reasons else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/health", health_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = config.listen.rpartition(":")
    site = web.TCPSite(runner, host, int(port))
    await site.start()
    bound = runner.addresses[0]
    address = f"{bound[0]}:{bound[1]}"
    log.info("metrics.serving", address=address)
    try:
        yield address
    finally:
        await runner.cleanup()
