"""Programme recommender for the EPG: learn on contents, recommend upcoming airings.

    python -m recommender train    --store URL --model-dir DIR
    python -m recommender serve    --store URL --model-dir DIR --listen HOST:PORT
    python -m recommender evaluate --store URL [--truth PATH] [--json PATH]
    python -m recommender feedback --store URL [--since ...]

Modules, one job each (docs/RECOMMENDER.md has the design and the figures behind it):
    settings     the typed settings tree (TOML + STB_RECOMMENDER__... + flags)
    dayparts     local-hour dayparts, in SQL and numpy
    signal       SQL: household x content x daypart confidences, watched programmes
    schedule     the EPG schedule (airings with content ids) and its time-window lookups
    popularity   popular-now per content and per channel x daypart
    model        ContentModel: implicit ALS with fit / recommend / similar_items / save / load
    index        ItemIndex: FAISS inner product, exact or HNSW by catalogue size
    foldin       fresh viewing folded into a trained model (recalculate_user)
    arrays       artifact arrays as .npy files, memory-mapped when served
    artifact     versioned model directories, published atomically behind a CURRENT pointer
    train        the training pipeline
    engine       answers Recommend / SimilarProgrammes / Popular from one immutable Snapshot
    batch        Recommend for a batch of calls, one numpy operation per step
    microbatch   gathers concurrent Recommend calls into batches
    servicer     the gRPC adapter (typed errors -> status codes)
    auth         TLS and per-client bearer tokens (server interceptor)
    server       the serving daemon: grpc.aio on uvloop, health, reflection, hot reload
    procs        `serve --processes N`: several serving processes on one port
    metrics      Prometheus metrics of the server
    evalsets     evaluation data: test views, sessions, per-session fold-in rows
    evaluate     time-split offline evaluation with baselines
    truth        the TruthScorer protocol (ground-truth ceiling) and its loader
    feedback     impressions, clicks and CTR per model version
    bench        the latency measurements behind the design (python -m recommender.bench)

Errors (recommender.errors):
    RecommenderError          root
    ├── InvalidArgument       a request that cannot be answered as asked (INVALID_ARGUMENT)
    ├── UnknownContent        a content id the model has never seen (NOT_FOUND)
    ├── ModelError            no usable model artifact
    └── NoTrainingData        nothing to learn from in the window
Store errors are warehouse.errors.WarehouseError (WarehouseUnavailable is retryable).
"""
