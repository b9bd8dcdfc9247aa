"""Prometheus metrics, one CollectorRegistry per app so several apps (tests) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)


class Metrics:
    """The server's metrics; thread-safe (the engine thread updates them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queue_depth = Gauge("darkroom_queue_depth", "Requests waiting to start denoising.", registry=r)
        self.active_requests = Gauge("darkroom_active_requests", "Requests denoising now.", registry=r)
        self.batch_size = Histogram(
            "darkroom_batch_size", "Real latent rows per forward pass (before bucket padding).",
            buckets=BATCH_BUCKETS, registry=r,
        )
        self.batch_requests = Histogram(
            "darkroom_batch_requests", "Requests sharing one forward pass.", buckets=BATCH_BUCKETS, registry=r,
        )
        self.step_latency = Histogram(
            "darkroom_step_latency_seconds", "Wall time of one guided forward pass.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.request_latency = Histogram(
            "darkroom_request_latency_seconds", "Arrival until images are ready, successful requests.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.images_served = Counter("darkroom_images_served", "Images returned.", ["model"], registry=r)
        self.rejections = Counter(
            "darkroom_rejections", "Requests refused or failed, by reason.", ["reason"], registry=r,
        )
        self.retries = Counter(
            "darkroom_retries", "Forward passes or decodes retried, by cause.", ["cause"], registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
