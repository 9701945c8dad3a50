"""`python -m recommender {train,serve,evaluate,feedback}`: the programme recommender."""

from __future__ import annotations

import os

# BLAS at one thread, before numpy (and faiss's own OpenBLAS) load: ALS and per-request
# scoring parallelise above BLAS, and implicit warns otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import sys
from typing import Any

from recommender.settings import ENV_PREFIX, RecommenderSettings
from stbcommon.settings import SettingsError, load, redacted

DESCRIPTION = """\
Programme recommender for the EPG: learns on contents (series, titles) from STB viewing in
ClickHouse, recommends upcoming airings over gRPC (stb.recommender.v1.Recommender).

  train     aggregate viewing in the store, fit ALS, publish a model version atomically
  serve     answer Recommend / SimilarProgrammes / Popular; hot-reloads new versions
  evaluate  time-split offline evaluation against baselines (HR@5, HR@10, NDCG@10, coverage)
  feedback  impressions, clicks and click-through per model version
"""

EPILOG = f"""\
settings, lowest to highest precedence: built-in defaults, the TOML file (--config),
environment variables {ENV_PREFIX}__<SECTION>__<KEY> (e.g. {ENV_PREFIX}__ALS__FACTORS,
{ENV_PREFIX}__SERVE__LISTEN), then flags. See docs/RECOMMENDER.md.

examples:
  python -m recommender train --store clickhouse://default@ch:9000/stb --model-dir /var/lib/stb/models
  python -m recommender serve --store chdb:///var/lib/stb/chdb --model-dir /var/lib/stb/models \\
      --listen 0.0.0.0:50051
  python -m recommender evaluate --store clickhouse://ch:9000/stb --truth truth.npz --json eval.json
  python -m recommender feedback --store clickhouse://ch:9000/stb --since 7d
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m recommender", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML settings file")
    common.add_argument("--store", metavar="URL", help="clickhouse://user:pass@host:9000/db or chdb:///abs/path")
    common.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    common.add_argument("--log-format", choices=["json", "text"], help="structured JSON or text")
    common.add_argument("--check-config", action="store_true", help="validate the settings, print them, exit")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model-dir", metavar="DIR", help="model versions and the CURRENT pointer")
    fit = argparse.ArgumentParser(add_help=False)
    fit.add_argument("--factors", type=int, help="ALS latent factors (default 64)")
    fit.add_argument("--iterations", type=int, help="ALS iterations (default 15)")
    fit.add_argument("--regularization", type=float, help="ALS regularisation (default 0.05)")
    fit.add_argument("--alpha", type=float, help="confidence scale (default 10)")
    fit.add_argument("--zap-threshold", type=int, metavar="S", help="views shorter than this are zapping (180)")
    fit.add_argument("--half-life-days", type=float, help="recency decay half-life, 0 = none (14)")
    fit.add_argument("--history-days", type=float, help="days of viewing to learn from (56)")

    t = sub.add_parser("train", parents=[common, model, fit], help="fit and publish a model version",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    t.add_argument("--until", metavar="TIME", help="learn from views before this (unix ms, ISO time; "
                                                   "default: after the latest view)")
    t.add_argument("--no-eval", action="store_true", help="skip the evaluation stored in the metadata")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    s = sub.add_parser("serve", parents=[common, model], help="serve recommendations over gRPC")
    s.add_argument("--listen", metavar="HOST:PORT", help="gRPC address (default 0.0.0.0:50051; port 0 = any)")
    s.add_argument("--metrics-port", type=int, metavar="P", help="Prometheus /metrics port, 0 = off (9465)")
    s.add_argument("--ready-file", metavar="PATH", help="write HOST:PORT here once serving")
    s.add_argument("--processes", type=int, metavar="N",
                   help="serving processes on the one port (SO_REUSEPORT), sharing the memory-mapped model (1)")
    s.add_argument("--process-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    s.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (with --tls-key: TLS only)")
    s.add_argument("--tls-key", metavar="PEM", help="server private key (mode 0600)")
    s.add_argument("--tokens-file", metavar="PATH", help="CLIENT_NAME TOKEN [METHOD,...] a line (mode 0600)")

    e = sub.add_parser("evaluate", parents=[common, fit], help="time-split offline evaluation")
    e.add_argument("--truth", metavar="PATH", help="ground truth for the ceiling (firmware_sim.truth)")
    e.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    e.add_argument("--cutoff", metavar="TIME", help="train before, test after (default: end - test days)")
    e.add_argument("--test-days", type=float, help="length of the test period (7)")
    e.add_argument("--window-minutes", type=int, help="ranking window at each session start (180)")
    e.add_argument("--max-sessions", type=int, help="sessions sampled (20000)")
    e.add_argument("--ablation", action="store_true", help="also run the design-decision variants")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")

    f = sub.add_parser("feedback", parents=[common], help="impressions, clicks and CTR per model version")
    f.add_argument("--since", metavar="TIME", default="7d", help="unix ms, ISO time or 7d/36h ago (7d)")
    f.add_argument("--until", metavar="TIME", help="end of the period (default now)")
    f.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from recommender.feedback import parse_time

    def get(name: str) -> Any:
        return getattr(args, name, None)

    return {
        "store.url": get("store"), "model.dir": get("model_dir"), "log.level": get("log_level"),
        "log.format": get("log_format"), "als.factors": get("factors"), "als.iterations": get("iterations"),
        "als.regularization": get("regularization"), "als.alpha": get("alpha"),
        "signal.zap_threshold_s": get("zap_threshold"), "signal.half_life_days": get("half_life_days"),
        "signal.history_days": get("history_days"), "serve.listen": get("listen"),
        "metrics.port": get("metrics_port"), "serve.ready_file": get("ready_file"),
        "serve.processes": get("processes"), "serve.tls_cert": get("tls_cert"), "serve.tls_key": get("tls_key"),
        "serve.tokens_file": get("tokens_file"),
        "evaluate.test_days": get("test_days"), "evaluate.window_minutes": get("window_minutes"),
        "evaluate.max_sessions": get("max_sessions"),
        "evaluate.cutoff_ms": parse_time(args.cutoff) if get("cutoff") else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load(RecommenderSettings, toml_path=args.config, env=os.environ, env_prefix=ENV_PREFIX,
                        overrides=_overrides(args))
    except (SettingsError, ValueError) as exc:
        print(f"recommender: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(redacted(settings))
        return 0
    from stbcommon import logs

    logs.configure(settings.log.level, settings.log.format)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it tried: noise
    if args.command == "serve":
        from recommender.auth import AuthConfigError, load_auth
        from recommender.server import run

        try:  # the files named in [serve] are checked before anything starts
            load_auth(settings.serve)
        except AuthConfigError as exc:
            for problem in exc.problems:
                print(f"recommender serve: {problem}", file=sys.stderr)
            return 2
        if settings.serve.processes > 1:
            from recommender.procs import run_processes

            return run_processes(settings, list(sys.argv[1:] if argv is None else argv), settings.serve.processes)
        return run(settings, args.process_index)
    from recommender.errors import RecommenderError
    from warehouse import WarehouseError, open_warehouse

    try:
        store = open_warehouse(settings.store.url)
        try:
            return _batch_command(args, settings, store)
        finally:
            store.close()
    except (RecommenderError, WarehouseError, ValueError) as exc:
        print(f"recommender {args.command}: {exc}", file=sys.stderr)
        return 1


def _batch_command(args: argparse.Namespace, settings: RecommenderSettings, store: Any) -> int:
    if args.command == "train":
        from recommender.feedback import parse_time
        from recommender.train import train

        meta = train(settings, store, until_ms=parse_time(args.until) if args.until else 0,
                     show_progress=not args.no_progress, evaluate=not args.no_eval)
        print(json.dumps({k: meta[k] for k in ("version", "folder", "data_window_ms", "counts", "training_s")
                          if k in meta}, indent=2))
        if "evaluation" in meta and "methods" in meta["evaluation"]:
            for m in meta["evaluation"]["methods"]:
                print(f"  {m['name']:<16} HR@10 {m['hr@10']:.3f}  NDCG@10 {m['ndcg@10']:.3f}")
        return 0
    if args.command == "evaluate":
        from recommender.evaluate import evaluate
        from recommender.truth import load_truth

        truth = load_truth(args.truth) if args.truth else None
        report = evaluate(settings, store, truth=truth, ablation=args.ablation, show_progress=not args.no_progress)
        print(report.table())
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report.to_json(), fh, indent=2)
        return 0
    from recommender.feedback import feedback, parse_time, table

    until = parse_time(args.until) if args.until else parse_time("0d")
    since = parse_time(args.since)
    rows = feedback(store, since, until)
    print(table(rows, since, until))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.to_json() for r in rows], fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
