#!/usr/bin/env bash
# A 3-member etcd cluster on 127.0.0.1 for the etcd store's tests and
# benchmarks: clients on 23791-23793, peers on 23801-23803, data under
# $ETCD_CLUSTER_DIR (default: $TMPDIR/machine-etcd-cluster).
#
#   scripts/etcd-cluster.sh start        start the members that are not running
#                                        (idempotent), wait until healthy, print
#                                        the `export ETCD_ENDPOINTS=...` line
#   scripts/etcd-cluster.sh stop         stop every member (data kept)
#   scripts/etcd-cluster.sh reset        stop and delete the data
#   scripts/etcd-cluster.sh status       every member's status table
#   scripts/etcd-cluster.sh leader       the leader's member name (m1, m2 or m3)
#   scripts/etcd-cluster.sh kill NAME    SIGKILL one member (NAME or `leader`)
#   scripts/etcd-cluster.sh endpoints    the ETCD_ENDPOINTS value
#
# Needs Debian's etcd-server and etcd-client (etcd and etcdctl 3.4).
set -euo pipefail

DIR="${ETCD_CLUSTER_DIR:-${TMPDIR:-/tmp}/machine-etcd-cluster}"
NAMES=(m1 m2 m3)
client_port() { echo $((23790 + ${1#m})); }
peer_port() { echo $((23800 + ${1#m})); }
ENDPOINTS="http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
CLUSTER="m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802,m3=http://127.0.0.1:23803"
export ETCDCTL_API=3

running() {
  local pid
  pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

# Heartbeat and election timeouts three times etcd's defaults (100 ms and
# 1 s): on a 2-core machine running the whole test suite, a member starved
# of CPU for over a second made the others elect a new leader in the middle
# of a test (seen in CI: "apply request took too long", then "leader
# change"), and that test's next read failed as unavailable. Killing the
# leader (tests/etcd_faults.rs) still elects another within about 3 s.
start_member() {
  local name=$1 state=new
  running "$name" && return 0
  mkdir -p "$DIR"
  # A member that has data rejoins the cluster it was part of.
  [ -d "$DIR/$name/member" ] && state=existing
  nohup etcd --name "$name" --data-dir "$DIR/$name" \
    --listen-client-urls "http://127.0.0.1:$(client_port "$name")" \
    --advertise-client-urls "http://127.0.0.1:$(client_port "$name")" \
    --listen-peer-urls "http://127.0.0.1:$(peer_port "$name")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$name")" \
    --initial-cluster "$CLUSTER" --initial-cluster-state "$state" \
    --initial-cluster-token machine-test --logger zap --log-outputs "$DIR/$name.log" \
    --heartbeat-interval 300 --election-timeout 3000 \
    >>"$DIR/$name.out" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

healthy() {
  etcdctl --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1
}

wait_healthy() {
  for _ in $(seq 1 60); do
    healthy && return 0
    sleep 0.5
  done
  echo "etcd cluster in $DIR did not become healthy; logs: $DIR/*.log" >&2
  return 1
}

leader() {
  # `endpoint status` lists IS LEADER per member; the member's port names it.
  etcdctl --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 2s endpoint status -w simple 2>/dev/null \
    | awk -F', ' '$5 == "true" { split($1, url, ":"); print "m" (url[3] - 23790) }' | head -n 1
}

case "${1:-start}" in
  start)
    for name in "${NAMES[@]}"; do start_member "$name"; done
    wait_healthy
    echo "export ETCD_ENDPOINTS=$ENDPOINTS"
    ;;
  stop)
    for name in "${NAMES[@]}"; do
      if running "$name"; then kill "$(cat "$DIR/$name.pid")"; fi
    done
    for name in "${NAMES[@]}"; do
      # The last member can take a few seconds: it tries to hand over leadership.
      for _ in $(seq 1 150); do running "$name" || break; sleep 0.1; done
      rm -f "$DIR/$name.pid"
    done
    ;;
  reset)
    "$0" stop
    rm -rf "$DIR"
    ;;
  status)
    etcdctl --endpoints "$ENDPOINTS" --dial-timeout 1s endpoint status -w table
    ;;
  leader)
    leader
    ;;
  kill)
    name=${2:?member name or leader}
    [ "$name" = leader ] && name=$(leader)
    [ -n "$name" ] || { echo "no leader" >&2; exit 1; }
    kill -9 "$(cat "$DIR/$name.pid")"
    rm -f "$DIR/$name.pid"
    echo "$name"
    ;;
  endpoints)
    echo "$ENDPOINTS"
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
