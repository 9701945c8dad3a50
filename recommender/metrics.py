"""Prometheus metrics of the serving daemon (served on /metrics by stbcommon.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("recommender_requests_total", "RPCs answered", ["method", "status"])
LATENCY = Histogram("recommender_request_seconds", "Time to answer one RPC (in the handler)", ["method"],
                    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
ANSWERS = Counter("recommender_answers_total", "Recommend answers by kind", ["kind"])  # personal, cold_start
MODEL_INFO = Gauge("recommender_model_info", "1 for the model version being served", ["version"])
MODEL_DATA_END = Gauge("recommender_model_data_end_seconds", "Unix time of the newest view the model learnt from")
RELOADS = Counter("recommender_model_reloads_total", "Model versions loaded after start", ["result"])
SCHEDULE_AIRINGS = Gauge("recommender_schedule_airings", "Airings in the schedule being served")
SCHEDULE_REFRESHES = Counter("recommender_schedule_refreshes_total", "Schedule loads from the store", ["result"])
FOLDIN_HOUSEHOLDS = Gauge("recommender_foldin_households", "Households with vectors refreshed by fold-in")
FOLDINS = Counter("recommender_foldins_total", "Fold-in runs", ["result"])
STORE_AVAILABLE = Gauge("recommender_store_available", "1 while the store can be queried")
AUTH_DENIED = Counter("recommender_auth_denied_total", "Calls refused by the token check", ["reason"])
BATCH_SIZE = Histogram("recommender_batch_size", "Recommend calls scored together (micro-batching)",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
