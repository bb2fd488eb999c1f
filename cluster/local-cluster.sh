#!/usr/bin/env bash
# A multi-node Ray cluster on one machine: a head node plus worker nodes, each its own raylet, for trying the
# cluster path (and for the integration tests) without a cloud account.
#
#   cluster/local-cluster.sh start [--workers 2] [--worker-cpus 1] [--worker-gpus 0] [--head-cpus 0]
#                                  [--port 6390] [--dashboard-port 8266] [--dir /tmp/sweeplab-cluster]
#                                  [--private-tmp]
#   cluster/local-cluster.sh status      [--dir ...]   the nodes Ray sees
#   cluster/local-cluster.sh kill-worker I [--dir ...] SIGKILL worker node I's raylet (a node failure)
#   cluster/local-cluster.sh stop        [--dir ...]   stop this cluster's processes (other Ray instances are left)
#
# `start` prints, and writes to DIR/cluster.env, the values a client needs:
#   RAY_ADDRESS=127.0.0.1:PORT                 for `sweeplab run --address` and `ray status`
#   SWEEPLAB_DASHBOARD=http://127.0.0.1:DPORT  for `sweeplab submit --address` and `ray job submit --address`
#   SWEEPLAB_METRICS_PORTS=...                 each node's Prometheus endpoint (http://127.0.0.1:P/metrics)
# Worker node I carries the custom resource `sweeplab_worker_I` (used by kill-worker) and, with --worker-gpus G,
# G *logical* GPUs: Ray schedules GPU trials there although the machine has none (the trial then runs on the CPU).
# --private-tmp (root only; Linux mount namespaces): each worker node runs in its own mount namespace with an empty
# tmpfs over /tmp (and over $TMPDIR when set), so it sees none of the head's temporary files, as separate machines
# would not; a sweep whose storage is a local folder under /tmp then fails there, one on s3:// must not.
# The head gets no CPUs by default, as on a real cluster, so Train workers land on worker nodes while the job and
# the per-trial drivers stay on the head.
# Token authentication: current Ray turns it on for new clusters and keeps the token in ~/.ray/auth_token (or
# RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH); clients on this machine find it there. Set RAY_AUTH_MODE=disabled to opt
# out. The environment of `start` (PYTHONPATH, SWEEPLAB_TASK_MODULES, RAY_* settings) reaches every node.
set -euo pipefail

cmd=${1:-}
shift || true
WORKERS=2 WORKER_CPUS=1 WORKER_GPUS=0 HEAD_CPUS=0 PORT=6390 DASHBOARD_PORT=8266 DIR=/tmp/sweeplab-cluster
PRIVATE_TMP=0 index=
while [[ $# -gt 0 ]]; do
  case $1 in
    --workers) WORKERS=$2; shift 2 ;;
    --worker-cpus) WORKER_CPUS=$2; shift 2 ;;
    --worker-gpus) WORKER_GPUS=$2; shift 2 ;;
    --head-cpus) HEAD_CPUS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --dashboard-port) DASHBOARD_PORT=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --private-tmp) PRIVATE_TMP=1; shift ;;
    [0-9]*) index=$1; shift ;;
    *) echo "error: unknown argument '$1' (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done

RAY=${RAY:-$(command -v ray || true)}
[[ -z $RAY && -x "$(dirname "$0")/../.venv/bin/ray" ]] && RAY="$(dirname "$0")/../.venv/bin/ray"
if [[ $cmd == start || $cmd == status ]]; then
  [[ -n $RAY ]] || { echo "error: the 'ray' command is not on PATH (activate the project's .venv)" >&2; exit 1; }
fi
PY="$(dirname "${RAY:-python3}")/python"
[[ -x $PY ]] || PY=python3

# Token authentication on every node and client, with the one token in ~/.ray/auth_token (made at start when
# missing): `ray start --address` and `ray status` do not switch it on by themselves, and a node without it cannot join.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Every process of this cluster has its node's temp dir (DIR/ray-*) on the command line: that is how stop finds
# them. Each node has its own: nodes sharing one would unpack the job's runtime environment into the same folder
# and pull it from under each other.
# Their children (Ray's agents and workers) rename themselves (ray::...), so stop takes the whole process tree.
pids_matching() { pgrep -f -- "$1" || true; }
with_descendants() {
  local all=" $* " frontier="$*" next pid
  while [[ -n ${frontier// /} ]]; do
    next=
    for pid in $frontier; do
      for child in $(pgrep -P "$pid" || true); do
        [[ $all == *" $child "* ]] || { all+="$child "; next+=" $child"; }
      done
    done
    frontier=$next
  done
  echo $all
}

stop() {
  local pids
  pids=$(pids_matching "$DIR/ray-")
  [[ -z $pids ]] && { echo "no cluster running under $DIR"; return 0; }
  # shellcheck disable=SC2086
  pids=$(with_descendants $pids)
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 50); do
    alive=$(ps -o pid= -p "${pids// /,}" 2>/dev/null || true)
    [[ -z $alive ]] && break
    sleep 0.2
  done
  [[ -n $alive ]] && kill -KILL $alive 2>/dev/null || true
  echo "stopped the cluster under $DIR"
}

case $cmd in
  start)
    if [[ -n $(pids_matching "$DIR/ray-") ]]; then
      echo "error: a cluster is already running under $DIR (stop it first: $0 stop --dir $DIR)" >&2; exit 1
    fi
    mkdir -p "$DIR"
    private=()
    if [[ $PRIVATE_TMP == 1 ]]; then
      # `unshare -m` makes the new namespace's mounts private, so the tmpfs never shows on the host. The node's own
      # temp dir (DIR/ray-wI) is made again inside it; its log is opened here, outside.
      tmps="/tmp${TMPDIR:+ $TMPDIR}"
      # What the node runs must stay visible when it lies under a hidden folder (a checkout or its .venv in /tmp):
      # the repository and Ray's environment are bind-mounted aside, then back over the tmpfs.
      keep="$(cd "$(dirname "$0")/.." && pwd) $(cd "$(dirname "$RAY")/.." && pwd)"
      stage=$(mktemp -d /var/tmp/sweeplab-keep.XXXXXX)
      # shellcheck disable=SC2016
      private=(unshare -m sh -c 'n=0; for k in $3; do n=$((n + 1)); mkdir -p "$4/$n" && mount --bind "$k" "$4/$n" || exit 1
        done
        for d in $1; do
          mkdir -p "$d" && mount -t tmpfs -o mode=1777 sweeplab-private "$d" || exit 1
        done
        n=0; for k in $3; do n=$((n + 1)); mkdir -p "$k" && mount --bind "$4/$n" "$k" || exit 1; done
        mkdir -p "$2" && shift 4 && exec "$@"' sh "$tmps" "$DIR" "$keep" "$stage")
      "${private[@]}" true || { echo "error: --private-tmp needs root and mount namespaces (unshare -m)" >&2; exit 1; }
    fi
    [[ $RAY_AUTH_MODE == token ]] && "$RAY" get-auth-token --generate >/dev/null
    # Every process of the cluster inherits this address. Ray code that finds "its" cluster by looking for running
    # ones (Ray Train's placement-group cleaner, which frees a stopped trial's resources, queries the state API that
    # way) would otherwise fail whenever a second Ray runs on the machine, and leave the resources held.
    export RAY_ADDRESS="127.0.0.1:$PORT"
    metrics_ports=()
    head_metrics=$(free_port)
    metrics_ports+=("$head_metrics")
    # The head has no CPUs, so Ray would start its worker processes one at a time; every trial's driver, Train
    # controller and placement-group cleaner is one, so let it start as many at once as the machine has cores.
    RAY_worker_maximum_startup_concurrency=${RAY_worker_maximum_startup_concurrency:-$(nproc)} \
    "$RAY" start --head --node-ip-address 127.0.0.1 --port "$PORT" --num-cpus "$HEAD_CPUS" --num-gpus 0 \
      --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
      --dashboard-agent-listen-port "$(free_port)" \
      --metrics-export-port "$head_metrics" \
      --temp-dir "$DIR/ray-head" --disable-usage-stats >"$DIR/head.log" 2>&1 \
      || { cat "$DIR/head.log" >&2; echo "error: the head node did not start (log above)" >&2; exit 1; }
    for i in $(seq 1 "$WORKERS"); do
      m=$(free_port)
      metrics_ports+=("$m")
      "${private[@]}" "$RAY" start --address "127.0.0.1:$PORT" --node-ip-address 127.0.0.1 \
        --num-cpus "$WORKER_CPUS" --num-gpus "$WORKER_GPUS" --resources "{\"sweeplab_worker_$i\": 1}" \
        --dashboard-agent-listen-port "$(free_port)" --metrics-export-port "$m" \
        --temp-dir "$DIR/ray-w$i" --disable-usage-stats >"$DIR/worker-$i.log" 2>&1 \
        || { cat "$DIR/worker-$i.log" >&2; echo "error: worker node $i did not start (log above)" >&2; stop; exit 1; }
    done
    # Ready when every node has joined and the head's job agent answers (a job submitted earlier is refused).
    for _ in $(seq 120); do
      alive=$("$RAY" list nodes --address "http://127.0.0.1:$DASHBOARD_PORT" --filter "state=ALIVE" --format json \
        2>/dev/null | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
      [[ $alive -ge $((WORKERS + 1)) ]] && "$RAY" job list --address "http://127.0.0.1:$DASHBOARD_PORT" \
        >/dev/null 2>&1 && break
      sleep 1
    done
    {
      echo "RAY_ADDRESS=127.0.0.1:$PORT"
      echo "SWEEPLAB_DASHBOARD=http://127.0.0.1:$DASHBOARD_PORT"
      echo "SWEEPLAB_METRICS_PORTS=$(IFS=,; echo "${metrics_ports[*]}")"
    } >"$DIR/cluster.env"
    echo "started a head and $WORKERS worker node(s) ($WORKER_CPUS CPU, $WORKER_GPUS logical GPU each) under $DIR"
    cat "$DIR/cluster.env"
    ;;
  status)
    [[ -f $DIR/cluster.env ]] || { echo "error: no cluster under $DIR" >&2; exit 1; }
    # shellcheck disable=SC1091
    source "$DIR/cluster.env"
    "$RAY" status --address "$RAY_ADDRESS"
    ;;
  kill-worker)
    [[ -n $index ]] || { echo "error: kill-worker needs the worker's number, e.g. '$0 kill-worker 1'" >&2; exit 2; }
    pid=$(pgrep -f -- "raylet.*sweeplab_worker_$index\b" | head -1 || true)
    [[ -n $pid ]] || { echo "error: no raylet of worker node $index is running" >&2; exit 1; }
    kill -KILL "$pid"
    echo "killed worker node $index (raylet pid $pid)"
    ;;
  stop) stop ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
