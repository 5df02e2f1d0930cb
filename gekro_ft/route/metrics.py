"""The router's Prometheus metrics (prometheus_client, one registry per router): every request
by the upstream that answered (``none`` for an error), the reason and the tenant, with its
status; upstream failures by kind; dollars and tokens by upstream and tenant."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest


class RouteMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gekro_route_requests", "Requests answered, by who answered and why.",
                                ["upstream", "reason", "tenant", "status"], registry=self.registry)
        self.errors = Counter("gekro_route_upstream_errors", "Upstream failures after retries, by kind.",
                              ["upstream", "kind"], registry=self.registry)
        self.usd = Counter("gekro_route_cost_usd", "US$ spent, by upstream and tenant.",
                           ["upstream", "tenant"], registry=self.registry)
        self.tokens = Counter("gekro_route_tokens", "Tokens, by upstream, tenant and direction.",
                              ["upstream", "tenant", "direction"], registry=self.registry)

    def request(self, upstream: str, reason: str, tenant: str, status: int) -> None:
        self.requests.labels(upstream, reason, tenant, str(status)).inc()

    def upstream_error(self, upstream: str, kind: str) -> None:
        self.errors.labels(upstream, kind).inc()

    def cost(self, upstream: str, tenant: str, usd: float, input_tokens: int, output_tokens: int) -> None:
        self.usd.labels(upstream, tenant).inc(usd)
        self.tokens.labels(upstream, tenant, "input").inc(input_tokens)
        self.tokens.labels(upstream, tenant, "output").inc(output_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
