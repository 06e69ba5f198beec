#!/usr/bin/env bash
# `make demo`: a local control plane, the InferencePool CRD, the operator running against it, the
# example pools, a vLLM simulator answering at the pods' addresses, and the
# `kubectl get inferencepools` table. `tools/demo.sh down` (or `make demo-down`) stops it all.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export CROSSOVER_CLUSTER_DIR=${CROSSOVER_CLUSTER_DIR:-$repo/.cluster}
state="$CROSSOVER_CLUSTER_DIR/demo"
ns=crossover-demo

say() { printf '[demo] %s\n' "$*" >&2; }

stop_demo() {
  for p in pod-sync operator vllm-sim; do
    [ -f "$state/$p.pid" ] && kill "$(cat "$state/$p.pid")" 2>/dev/null || true
  done
}

if [ "${1:-}" = down ]; then
  stop_demo
  tools/cluster.sh down
  exit 0
fi

say "building crossover"
cargo build --bins -q
bindir=$(tools/build.sh | tail -n 1)
export PATH="$bindir:$PATH"
tools/cluster.sh up
export KUBECONFIG="$CROSSOVER_CLUSTER_DIR/kubeconfig"
mkdir -p "$state"
stop_demo

say "installing the InferencePool CRD"
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/inferencepools.crossover.dev --timeout=30s >/dev/null

say "starting the operator (log: $state/operator.log)"
# Rates and month-to-date written every 15 s rather than every 5 minutes, so `kubectl get ipool -w`
# moves while you watch (a fleet keeps the default: see README, "Writes status when it matters").
CROSSOVER_STATUS_CHECKPOINT_SECONDS="${CROSSOVER_STATUS_CHECKPOINT_SECONDS:-15}" \
  target/debug/crossover run >"$state/operator.log" 2>&1 &
echo $! >"$state/operator.pid"

say "applying the example pools in namespace $ns"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$ns" apply -f examples/ >/dev/null

say "waiting for the pools' pods to be scheduled on the fake GPU nodes"
for _ in $(seq 1 60); do
  pending=$(kubectl -n "$ns" get pods --no-headers 2>/dev/null | grep -vc Running || true)
  total=$(kubectl -n "$ns" get pods --no-headers 2>/dev/null | wc -l)
  [ "$total" -gt 0 ] && [ "$pending" -eq 0 ] && break
  sleep 1
done

# Every pod gets a loopback IP from kwok: serve vLLM's /metrics there with the simulator, with
# some load on each pool, so the operator has real numbers to size and price. Pods the operator
# adds later (a scale-up) are registered as they get an IP, and their pool's load is split again.
control=127.0.0.1:${DEMO_SIM_CONTROL_PORT:-9400}
# Per pool: requests/s, input and output tokens per request, from a trickle to a busy pool.
loads="gemma-small-volume 0.05 400 120
gemma-at-volume 0.5 380 114
h100-bare-metal-low 2 950 285
h100-bare-metal-high 2 950 285
llama-70b-a100 3 1500 250
qwen-external 1 800 300"

offer_load() { # pool
  local pool rps input output
  while read -r pool rps input output; do
    [ "$pool" = "$1" ] || continue
    curl -sf -X POST "http://$control/load" -H 'content-type: application/json' \
      -d "{\"pool\":\"$pool\",\"requestsPerSecond\":$rps,\"inputTokensPerRequest\":$input,\"outputTokensPerRequest\":$output}" >/dev/null || true
  done <<<"$loads"
}

sync_pods() { # registers pods the simulator does not serve yet; re-offers their pools' load
  local known pool ip changed=""
  known=$(curl -sf "http://$control/pods" || echo "")
  while read -r pool ip; do
    [ -n "$ip" ] || continue
    case "$known" in *"\"$ip:8000\""*) continue ;; esac
    curl -sf -X POST "http://$control/pods" -H 'content-type: application/json' \
      -d "{\"pool\":\"$pool\",\"address\":\"$ip:8000\"}" >/dev/null || continue
    changed="$changed $pool"
  done < <(kubectl -n "$ns" get pods -o jsonpath='{range .items[*]}{.metadata.labels.crossover\.dev/pool} {.status.podIP}{"\n"}{end}')
  for pool in $(printf '%s\n' $changed | sort -u); do offer_load "$pool"; done
}

say "starting the vLLM simulator at the pods' addresses (log: $state/vllm-sim.log)"
target/debug/vllm-sim --control "$control" --output-tokens-per-second 1500 >"$state/vllm-sim.log" 2>&1 &
echo $! >"$state/vllm-sim.pid"
for _ in $(seq 1 50); do curl -sf "http://$control/health" >/dev/null && break; sleep 0.2; done
sync_pods
( while kill -0 "$(cat "$state/vllm-sim.pid")" 2>/dev/null; do sleep 3; sync_pods; done ) >/dev/null 2>&1 &
echo $! >"$state/pod-sync.pid"

say "waiting for the first readings"
sleep "${DEMO_WAIT_SECONDS:-60}"
echo
kubectl get inferencepools.crossover.dev -n "$ns"
echo
cat >&2 <<EOF
[demo] Explore:  export KUBECONFIG=$KUBECONFIG PATH=$bindir:\$PATH
[demo]           kubectl get ipool -n $ns -w
[demo]           kubectl describe ipool -n $ns llama-70b-a100
[demo]           crossover plan -f examples/scenario-b-gemma-at-volume.yaml --input-tokens 500M --output-tokens 150M
[demo] Stop:     make demo-down
EOF
