"""Prometheus metrics (served on metrics_listen_addr at /metrics), namespace ``headscale_``."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)
for _c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    try:
        REGISTRY.register(_c)
    except ValueError:
        pass

NODES = Gauge("headscale_nodes", "Registered nodes", registry=REGISTRY)
NODES_ONLINE = Gauge("headscale_nodes_online", "Nodes with an open map session", registry=REGISTRY)
SESSIONS = Gauge("headscale_map_sessions", "Connected streaming map sessions", registry=REGISTRY)
NOISE_CONNECTIONS = Gauge("headscale_noise_connections", "Open TS2021 connections", registry=REGISTRY)
MAP_SENT = Counter("headscale_mapresponse_sent_total", "Map responses sent, by kind", ["type"], registry=REGISTRY)
MAP_REQUESTS = Counter("headscale_map_requests_total", "Map requests, by mode", ["mode"], registry=REGISTRY)
REGISTRATIONS = Counter("headscale_registrations_total", "Register requests by outcome", ["outcome"],
                        registry=REGISTRY)
FIRST_MAP_SECONDS = Histogram("headscale_first_map_seconds", "Time to build and send a full map",
                              buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1), registry=REGISTRY)
HTTP_SECONDS = Histogram("headscale_http_request_duration_seconds", "HTTP request latency", ["route", "status"],
                         registry=REGISTRY)


class _Latest:
    """A collector reading ``target``: one per kind per process, and a later server in the same
    process (tests, an HA takeover) replaces what it reads (``_register_latest``)."""

    def __init__(self, target) -> None:
        self.target = target


_latest: dict[type, _Latest] = {}


def _register_latest(kind: type[_Latest], target) -> None:
    collector = _latest.get(kind)
    if collector is None:
        collector = _latest[kind] = kind(target)
        REGISTRY.register(collector)
    else:
        collector.target = target


class _DerpCollector(_Latest):
    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.target.stats()
        yield GaugeMetricFamily("headscale_derp_clients", "Connected DERP clients", value=s["clients_connected"])
        for name in ("packets_relayed", "bytes_relayed", "packets_dropped", "clients_refused", "connections_total"):
            yield CounterMetricFamily(f"headscale_derp_{name}", f"DERP {name.replace('_', ' ')}", value=s[name])


class _LoopCollector:
    """Live asyncio tasks of the serving loop, counted at scrape time (the soak in bench/soak.py
    checks they stay flat: a growing count is a leaked session, timer or connection task)."""

    def collect(self):
        import asyncio

        from prometheus_client.core import GaugeMetricFamily

        try:
            n = len(asyncio.all_tasks())
        except RuntimeError:    # scraped outside the loop (tests rendering directly)
            return
        yield GaugeMetricFamily("headscale_asyncio_tasks", "Live asyncio tasks in the server's loop", value=n)


REGISTRY.register(_LoopCollector())

def register_derp(derp) -> None:
    """Report ``derp``'s counters (see _Latest)."""
    _register_latest(_DerpCollector, derp)


class _BodyBudgetCollector(_Latest):
    """The request body budget (app/server/body_budget.py), read at scrape time."""

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        b = self.target
        yield GaugeMetricFamily("headscale_request_body_bytes_reserved",
                                "Request body bytes reserved by plain-HTTP requests in flight", value=b.used)
        yield GaugeMetricFamily("headscale_request_body_bytes_reserved_peak",
                                "Highest request body reservation since start", value=b.peak)
        yield GaugeMetricFamily("headscale_request_body_bytes_limit",
                                "tuning.max_buffered_request_bytes", value=b.limit)
        yield CounterMetricFamily("headscale_request_body_waits", "Requests that waited for body budget",
                                  value=b.waited)
        yield CounterMetricFamily("headscale_request_body_refused", "Requests answered 503: no body budget in time",
                                  value=b.refused)


def register_body_budget(budget) -> None:
    """Report ``budget`` (see _Latest)."""
    _register_latest(_BodyBudgetCollector, budget)


def render() -> bytes:
    return generate_latest(REGISTRY)
