#!/bin/sh
# Regenerate the gRPC stubs of proto/recommender.proto (the generated code is committed).
# Usage: scripts/gen_proto.sh   (from anywhere; needs grpcio-tools in .venv or on PATH)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
cd "$root"
"$py" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. proto/recommender.proto
echo "regenerated proto/recommender_pb2.py, proto/recommender_pb2.pyi, proto/recommender_pb2_grpc.py"
