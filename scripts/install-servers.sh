#!/usr/bin/env bash
# Installs the real servers the integration tests run against, from the OS packages,
# when they are missing. The packaged ClickHouse is 18.16: the schema is written for it.
# Debian's chromium and chromium-driver run the console's browser tests (Selenium): a
# browser download of its own (Playwright's) cannot work on closed networks.
# ZooKeeper (Debian's 3.8) coordinates the cluster tests' replicated tables and ON CLUSTER DDL.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server clickhouse-client)
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing OS packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: need ${need[*]} and not root (no sudo); install them and re-run" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages try to start services; without an init system that fails harmlessly.
# Tests start their own servers on free ports in temporary folders.
