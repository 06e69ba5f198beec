#!/usr/bin/env bash
# A real, local Kubernetes control plane for crossover's tests and demo: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake GPU nodes whose pods go Running), all on
# 127.0.0.1, built from source by tools/build.sh. No Docker, no downloads.
#
#   tools/cluster.sh up      start (or reuse the running one); prints how to use the kubeconfig
#   tools/cluster.sh down    stop everything it started and remove its state
#   tools/cluster.sh status  say whether it runs
#
# State lives in $CROSSOVER_CLUSTER_DIR (default: <repo>/.cluster); the kubeconfig is
# $CROSSOVER_CLUSTER_DIR/kubeconfig. Pods get loopback IPs (127.1.0.0/16) so a local vLLM
# simulator can answer at each pod's real address.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${CROSSOVER_CLUSTER_DIR:-$repo/.cluster}
etcd_port=${CROSSOVER_ETCD_PORT:-23790}
etcd_peer_port=$((etcd_port + 10))
api_port=${CROSSOVER_API_PORT:-26443}
kcm_port=$((api_port + 1))
sched_port=$((api_port + 2))
kwok_port=$((api_port + 3))
pod_cidr=${CROSSOVER_POD_CIDR:-127.1.0.0/16}
gpu_nodes=${CROSSOVER_GPU_NODES:-4}
gpus_per_node=${CROSSOVER_GPUS_PER_NODE:-8}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

running() { # name
  local pidfile="$dir/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
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
  allocatable: {cpu: "96", memory: 1Ti, pods: "110", nvidia.com/gpu: "$gpus_per_node"}
  capacity: {cpu: "96", memory: 1Ti, pods: "110", nvidia.com/gpu: "$gpus_per_node"}
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
  local kc="$dir/kubeconfig" p="$dir/pki"

  log "starting etcd on 127.0.0.1:$etcd_port"
  start etcd "$bindir/etcd" --name=crossover --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="crossover=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync=true \
    --quota-backend-bytes=4294967296 --log-level=warn
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"

  log "starting kube-apiserver on https://127.0.0.1:$api_port"
  start kube-apiserver "$bindir/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$p/server.crt" --tls-private-key-file="$p/server.key" --client-ca-file="$p/ca.crt" \
    --authorization-mode=RBAC,Node --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" --disable-admission-plugins=ServiceAccount \
    --enable-priority-and-fairness=false --profiling=false --v=0
  wait_for kube-apiserver 60 curl -sf --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "https://127.0.0.1:$api_port/readyz"
  log "API server ready $((SECONDS - built))s after start"

  log "starting kube-controller-manager, kube-scheduler and kwok"
  start kube-controller-manager "$bindir/kube-controller-manager" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=false --controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route' \
    --concurrent-deployment-syncs=10 --concurrent-replicaset-syncs=10 --concurrent-gc-syncs=20 --v=0
  start kube-scheduler "$bindir/kube-scheduler" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$sched_port" --leader-elect=false --v=0
  start kwok "$bindir/kwok" --kubeconfig="$kc" --config="$repo/tools/kwok/stages.yaml" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$pod_cidr" --node-ip=127.0.0.1 --server-address="127.0.0.1:$kwok_port"

  local k=("$bindir/kubectl" --kubeconfig="$kc")
  wait_for "the default namespace" 30 "${k[@]}" get namespace default
  local products=(NVIDIA-H100-80GB-HBM3 NVIDIA-A100-SXM4-80GB NVIDIA-GeForce-RTX-3090 NVIDIA-H100-80GB-HBM3)
  { for i in $(seq 0 $((gpu_nodes - 1))); do
      gpu_node "$i" "${products[$((i % ${#products[@]}))]}"
    done
    cpu_node
  } | "${k[@]}" apply -f - >/dev/null
  nodes_ready() { [ "$("${k[@]}" get nodes --no-headers 2>/dev/null | grep -c ' Ready ')" -ge $((gpu_nodes + 1)) ]; }
  wait_for "ready GPU nodes and a CPU node" 30 nodes_ready
  # The API server taints new nodes not-ready; the node lifecycle controller, which would lift
  # it, is off (kwok nodes send no heartbeats and would be evicted), so lift it here.
  "${k[@]}" taint nodes --all node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
  log "cluster up in $((SECONDS - t0))s ($((built - t0))s checking/building binaries, $((SECONDS - built))s starting)"
  echo "$((SECONDS - built))" >"$dir/start-seconds"
  trap - EXIT
  usage
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
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
