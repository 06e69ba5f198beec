#!/usr/bin/env bash
# A real, local Kubernetes control plane for crossover's tests and demo: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake GPU nodes whose pods go Running), all on
# 127.0.0.1, built from source by tools/build.sh. No Docker, no downloads.
#
#   tools/cluster.sh up      start (or reuse the running one); prints how to use the kubeconfig
#   tools/cluster.sh down    stop everything it started and remove its state
#   tools/cluster.sh status  say whether it runs
#
# Fault tests drive single components (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) with the settings the cluster was started with:
#   tools/cluster.sh stop|start|restart|kill COMPONENT   (start and restart wait until it serves)
#   tools/cluster.sh pid COMPONENT
#   tools/cluster.sh etcd-compact                        compact etcd to its current revision
#
# State lives in $CROSSOVER_CLUSTER_DIR (default: <repo>/.cluster); the kubeconfig is
# $CROSSOVER_CLUSTER_DIR/kubeconfig. Pods get loopback IPs (127.1.0.0/16) so a local vLLM
# simulator can answer at each pod's real address.
#
# Settings (environment, read by `up` and kept in the state directory for the commands above):
#   CROSSOVER_ETCD_PORT, CROSSOVER_API_PORT, CROSSOVER_POD_CIDR   ports and pod addresses
#   CROSSOVER_SERVICE_CIDR    Service range (default 10.0.0.0/16: room for a fleet of pools)
#   CROSSOVER_GPU_NODES, CROSSOVER_GPUS_PER_NODE, CROSSOVER_PODS_PER_NODE, CROSSOVER_NODE_CPU,
#   CROSSOVER_NODE_MEMORY     the fake GPU nodes (4 × 8 GPUs, 110 pods, 96 CPUs, 1Ti by default)
#   CROSSOVER_AUDIT           1 or writes: the API server's audit log ($dir/audit.log, JSON lines)
#                             records every write; all: every request. Off by default (it costs).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${CROSSOVER_CLUSTER_DIR:-$repo/.cluster}
# A running cluster keeps the settings it was started with; commands on its components use them.
if [ "${1:-}" != up ] && [ -f "$dir/settings" ]; then
  # shellcheck disable=SC1091
  . "$dir/settings"
fi
etcd_port=${CROSSOVER_ETCD_PORT:-23790}
etcd_peer_port=$((etcd_port + 10))
api_port=${CROSSOVER_API_PORT:-26443}
kcm_port=$((api_port + 1))
sched_port=$((api_port + 2))
kwok_port=$((api_port + 3))
pod_cidr=${CROSSOVER_POD_CIDR:-127.1.0.0/16}
service_cidr=${CROSSOVER_SERVICE_CIDR:-10.0.0.0/16}
gpu_nodes=${CROSSOVER_GPU_NODES:-4}
gpus_per_node=${CROSSOVER_GPUS_PER_NODE:-8}
pods_per_node=${CROSSOVER_PODS_PER_NODE:-110}
node_cpu=${CROSSOVER_NODE_CPU:-96}
node_memory=${CROSSOVER_NODE_MEMORY:-1Ti}
audit=${CROSSOVER_AUDIT:-}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

alive() { # pid: a process that has exited but not been reaped yet (a zombie) is not alive
  kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

running() { # name
  local pidfile="$dir/$1.pid"
  [ -f "$pidfile" ] && alive "$(cat "$pidfile")"
}

start() { # name args...
  local name=$1; shift
  "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "$what did not come up in ${secs}s; last log lines:"
      for c in "${components[@]}"; do [ -f "$dir/$c.log" ] && { echo "--- $c" >&2; tail -n 15 "$dir/$c.log" >&2; }; done
      return 1
    fi
    sleep 0.3
  done
}

pki() {
  local p="$dir/pki"
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=crossover-local-ca" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 365 -extfile server.ext 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 365 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

kubeconfig() {
  local p="$dir/pki"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: crossover-local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $p/ca.crt
users:
- name: admin
  user:
    client-certificate: $p/admin.crt
    client-key: $p/admin.key
contexts:
- name: crossover-local
  context: {cluster: crossover-local, user: admin}
current-context: crossover-local
EOF
}

gpu_node() { # index product
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: gpu-node-$1
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: gpu-node-$1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    nvidia.com/gpu.product: $2
    nvidia.com/gpu.count: "$gpus_per_node"
spec:
  taints:
  - key: nvidia.com/gpu
    value: present
    effect: NoSchedule
status:
  allocatable: {cpu: "$node_cpu", memory: $node_memory, pods: "$pods_per_node", nvidia.com/gpu: "$gpus_per_node"}
  capacity: {cpu: "$node_cpu", memory: $node_memory, pods: "$pods_per_node", nvidia.com/gpu: "$gpus_per_node"}
  nodeInfo: {kubeletVersion: fake, architecture: amd64, operatingSystem: linux}
EOF
}

cpu_node() { # a node without GPUs, for the operator itself (as a Helm install places it)
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: cpu-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: cpu-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
status:
  allocatable: {cpu: "16", memory: 64Gi, pods: "110"}
  capacity: {cpu: "16", memory: 64Gi, pods: "110"}
  nodeInfo: {kubeletVersion: fake, architecture: amd64, operatingSystem: linux}
EOF
}

save_settings() {
  cat >"$dir/settings" <<EOF
CROSSOVER_ETCD_PORT=$etcd_port
CROSSOVER_API_PORT=$api_port
CROSSOVER_POD_CIDR=$pod_cidr
CROSSOVER_SERVICE_CIDR=$service_cidr
CROSSOVER_GPU_NODES=$gpu_nodes
CROSSOVER_GPUS_PER_NODE=$gpus_per_node
CROSSOVER_PODS_PER_NODE=$pods_per_node
CROSSOVER_NODE_CPU=$node_cpu
CROSSOVER_NODE_MEMORY=$node_memory
CROSSOVER_AUDIT=$audit
bindir=$bindir
EOF
}

audit_policy() { # writes | all
  local reads=None
  [ "$1" = all ] && reads=Metadata
  cat <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: $reads
EOF
}

api_healthy() {
  local p="$dir/pki"
  curl -sf --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "https://127.0.0.1:$api_port/readyz"
}

start_etcd() {
  log "starting etcd on 127.0.0.1:$etcd_port"
  start etcd "$bindir/etcd" --name=crossover --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="crossover=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync=true \
    --quota-backend-bytes=4294967296 --log-level=warn
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"
}

start_kube-apiserver() {
  local p="$dir/pki" audit_flags=()
  case "$audit" in
    "" | 0) ;;
    1 | writes | all)
      audit_policy "$([ "$audit" = all ] && echo all || echo writes)" >"$dir/audit-policy.yaml"
      audit_flags=(--audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/audit.log"
        --audit-log-format=json --audit-log-maxsize=0 --audit-log-maxbackup=0) ;;
    *) die "CROSSOVER_AUDIT must be 1, writes or all, not '$audit'" ;;
  esac
  log "starting kube-apiserver on https://127.0.0.1:$api_port${audit_flags[*]:+ (audit log: $dir/audit.log)}"
  start kube-apiserver "$bindir/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$p/server.crt" --tls-private-key-file="$p/server.key" --client-ca-file="$p/ca.crt" \
    --authorization-mode=RBAC,Node --service-cluster-ip-range="$service_cidr" --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" --disable-admission-plugins=ServiceAccount \
    --enable-priority-and-fairness=false --profiling=false --v=0 "${audit_flags[@]}"
  wait_for kube-apiserver 60 api_healthy
}

start_kube-controller-manager() {
  local kc="$dir/kubeconfig" p="$dir/pki"
  start kube-controller-manager "$bindir/kube-controller-manager" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=false --controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route' \
    --concurrent-deployment-syncs=10 --concurrent-replicaset-syncs=10 --concurrent-gc-syncs=20 --v=0
}

start_kube-scheduler() {
  local kc="$dir/kubeconfig"
  start kube-scheduler "$bindir/kube-scheduler" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$sched_port" --leader-elect=false --v=0
}

start_kwok() {
  local kc="$dir/kubeconfig"
  start kwok "$bindir/kwok" --kubeconfig="$kc" --config="$repo/tools/kwok/stages.yaml" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$pod_cidr" --node-ip=127.0.0.1 --server-address="127.0.0.1:$kwok_port"
}

up() {
  if running kube-apiserver; then
    log "a cluster from $dir is already running; reusing it"
    usage
    return 0
  fi
  local t0=$SECONDS
  bindir=$("$repo/tools/build.sh" etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok | tail -n 1)
  local built=$SECONDS
  down quiet
  mkdir -p "$dir"
  # A start that fails half way leaves nothing running behind it.
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; stopping what was started"; down quiet; fi' EXIT
  pki
  kubeconfig
  save_settings
  local kc="$dir/kubeconfig"

  start_etcd
  start_kube-apiserver
  log "API server ready $((SECONDS - built))s after start"

  log "starting kube-controller-manager, kube-scheduler and kwok"
  start_kube-controller-manager
  start_kube-scheduler
  start_kwok

  local k=("$bindir/kubectl" --kubeconfig="$kc")
  wait_for "the default namespace" 30 "${k[@]}" get namespace default
  local products=(NVIDIA-H100-80GB-HBM3 NVIDIA-A100-SXM4-80GB NVIDIA-GeForce-RTX-3090 NVIDIA-H100-80GB-HBM3)
  { for i in $(seq 0 $((gpu_nodes - 1))); do
      gpu_node "$i" "${products[$((i % ${#products[@]}))]}"
    done
    cpu_node
  } | "${k[@]}" apply -f - >/dev/null
  nodes_ready() { [ "$("${k[@]}" get nodes --no-headers 2>/dev/null | grep -c ' Ready ')" -ge $((gpu_nodes + 1)) ]; }
  wait_for "ready GPU nodes and a CPU node" 60 nodes_ready
  # The API server taints new nodes not-ready; the node lifecycle controller, which would lift
  # it, is off (kwok nodes send no heartbeats and would be evicted), so lift it here.
  "${k[@]}" taint nodes --all node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
  log "cluster up in $((SECONDS - t0))s ($((built - t0))s checking/building binaries, $((SECONDS - built))s starting)"
  echo "$((SECONDS - built))" >"$dir/start-seconds"
  trap - EXIT
  usage
}

component() { # name: one of the components, or die
  local c
  for c in "${components[@]}"; do [ "$c" = "$1" ] && return 0; done
  die "unknown component '$1' (one of: ${components[*]})"
}

stop_component() { # name signal
  running "$1" || { log "$1 is not running"; return 0; }
  local pid; pid=$(cat "$dir/$1.pid")
  kill "-$2" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; sleep 0.2; fi
  log "$1 stopped (SIG$2)"
}

start_component() { # name
  if running "$1"; then log "$1 is already running"; return 0; fi
  [ -n "${bindir:-}" ] || die "no cluster settings in $dir (start it with: tools/cluster.sh up)"
  # Keep the earlier run's log: its last lines explain the fault.
  if [ -f "$dir/$1.log" ]; then cat "$dir/$1.log" >>"$dir/$1.log.earlier"; fi
  "start_$1"
  log "$1 started (pid $(cat "$dir/$1.pid"))"
}

etcd_compact() {
  local rev
  rev=$(curl -sf -X POST "http://127.0.0.1:$etcd_port/v3/kv/range" -d '{"key":"AA=="}' \
    | sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
  [ -n "$rev" ] || die "cannot read etcd's revision"
  curl -sf -X POST "http://127.0.0.1:$etcd_port/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}" >/dev/null \
    || die "etcd refused to compact to revision $rev"
  log "etcd compacted to revision $rev"
  echo "$rev"
}

usage() {
  cat >&2 <<EOF
[cluster] kubeconfig: $dir/kubeconfig
[cluster]   export KUBECONFIG=$dir/kubeconfig
[cluster]   export PATH=$(dirname "$(readlink -f "${bindir:-$HOME/.cache/crossover/bin}/kubectl")"):\$PATH   # kubectl and helm built for this cluster
[cluster]   kubectl get nodes
[cluster] stop it with: make cluster-down
EOF
}

down() {
  local quiet=${1:-}
  [ -d "$dir" ] || { [ -n "$quiet" ] || log "no cluster state in $dir"; return 0; }
  local stopped=0
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    local c=${components[$i]}
    if running "$c"; then
      kill "$(cat "$dir/$c.pid")" 2>/dev/null || true
      stopped=$((stopped + 1))
    fi
  done
  # Give them a moment to exit, then make sure.
  for _ in $(seq 1 30); do
    local alive=0
    for c in "${components[@]}"; do running "$c" && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.2
  done
  for c in "${components[@]}"; do running "$c" && kill -9 "$(cat "$dir/$c.pid")" 2>/dev/null || true; done
  rm -rf "$dir"
  [ -n "$quiet" ] || log "stopped $stopped processes and removed $dir"
}

status() {
  local any=0
  for c in "${components[@]}"; do
    if running "$c"; then echo "$c: running (pid $(cat "$dir/$c.pid"))"; any=1; else echo "$c: stopped"; fi
  done
  [ $any -eq 1 ]
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  stop) component "${2:-}"; stop_component "$2" TERM ;;
  kill) component "${2:-}"; stop_component "$2" KILL ;;
  start) component "${2:-}"; start_component "$2" ;;
  restart) component "${2:-}"; stop_component "$2" TERM; start_component "$2" ;;
  pid) component "${2:-}"; running "$2" && cat "$dir/$2.pid" ;;
  etcd-compact) etcd_compact ;;
  *) echo "usage: $0 up|down|status | stop|start|restart|kill|pid COMPONENT | etcd-compact" >&2; exit 2 ;;
esac
