# crossover: the two commands a new machine needs are `make demo` and `make test`.
SHELL := /bin/bash
CLUSTER_DIR ?= $(CURDIR)/.cluster
export CROSSOVER_CLUSTER_DIR := $(CLUSTER_DIR)
KUBECONFIG_LOCAL := $(CLUSTER_DIR)/kubeconfig

.PHONY: build crds tools image cluster-up cluster-down lint unit test test-cluster test-faults bench-fleet demo demo-down

build:
	cargo build --bins

## Regenerate the committed CRDs from the Rust types (a test fails when they drift). The chart
## renders its copies in files/crds/ as templates (crds.enabled), so `helm upgrade` upgrades them.
crds:
	cargo run -q --bin crossover -- crd inferencepools > crds/inferencepools.crossover.dev.yaml
	cargo run -q --bin crossover -- crd prometheussources > crds/prometheussources.crossover.dev.yaml
	rm -f charts/crossover/files/crds/*.yaml
	cp crds/*.yaml charts/crossover/files/crds/

## Build (or find cached) kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, helm, crane.
tools:
	tools/build.sh

## The operator's image as an OCI archive, target/image/crossover-VERSION.oci.tar, with no Docker
## daemon: a static musl release binary in one layer, assembled by crane. Reused while current; the
## Dockerfile builds the same filesystem for people who build with Docker.
image:
	tools/image.sh

cluster-up:
	tools/cluster.sh up

cluster-down:
	tools/cluster.sh down

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --test faults --bench fleet -- -D warnings

## Everything CI runs: formatting, lint, unit tests, then every test against a real control plane
## that this target starts and stops itself, then the control-plane faults on a cluster of their
## own (test-faults).
test: lint
	tools/build.sh
	tools/image.sh
	cargo build --bins --tests
	@set -euo pipefail; \
	trap 'tools/cluster.sh down' EXIT; \
	tools/cluster.sh up; \
	PATH="$$(tools/build.sh 2>/dev/null | tail -n 1):$$PATH" KUBECONFIG="$(KUBECONFIG_LOCAL)" \
	  cargo test --no-fail-fast -- --test-threads=4
	$(MAKE) test-faults

## Control-plane faults (kube-apiserver and etcd restarts, an operator SIGKILLed mid scale-up, a
## frozen leader and its standby, watches that must relist) on a cluster of their own with the
## API server's audit log on, one at a time: they restart what they run on. About 6 minutes.
test-faults:
	tools/build.sh
	cargo build --bins --test faults
	@set -euo pipefail; \
	trap 'tools/cluster.sh down' EXIT; \
	tools/cluster.sh down; \
	CROSSOVER_AUDIT=1 tools/cluster.sh up; \
	log=$(CLUSTER_DIR)-faults.log; status=0; \
	PATH="$$(tools/build.sh 2>/dev/null | tail -n 1):$$PATH" KUBECONFIG="$(KUBECONFIG_LOCAL)" \
	  cargo test --test faults -- --test-threads=1 --nocapture >"$$log" 2>&1 || status=$$?; \
	grep -E '^test |test result' "$$log"; \
	echo "--- measured (full output in $$log):"; \
	grep -oE '(RECOVERY|MONEY|AUDIT|EVENTS) .*' "$$log" || true; \
	exit $$status

## What a fleet costs (not part of `make test`): POOLS pools (default 1,000) × 2 pods with metrics
## from vllm-sim, 15 s interval, the release build, on a cluster of its own (audit log of every
## request, a /16 Service range, nodes for the pods). Prints the operator's RSS, CPU, API requests
## per second by verb, status writes per second and what they changed, and load-step lags; keeps
## them in target/bench-fleet/. Stops any cluster in $(CLUSTER_DIR) first. 30-60 minutes on 2 cores.
## OPERATOR: the binary measured; by default the image's (static, musl), which is what ships.
POOLS ?= 1000
OPERATOR ?= target/$(shell uname -m)-unknown-linux-musl/release/crossover
bench-fleet:
	cargo build --release --bins
	tools/image.sh
	@set -euo pipefail; \
	trap 'tools/cluster.sh down' EXIT; \
	tools/cluster.sh down; \
	nodes=$$(( (2 * $(POOLS) + 99) / 100 + 1 )); \
	CROSSOVER_AUDIT=all CROSSOVER_GPU_NODES=$$nodes CROSSOVER_GPUS_PER_NODE=100 \
	  CROSSOVER_PODS_PER_NODE=110 CROSSOVER_NODE_CPU=256 tools/cluster.sh up; \
	PATH="$$(tools/build.sh 2>/dev/null | tail -n 1):$$PATH" cargo bench --bench fleet -- \
	  --pools $(POOLS) --operator $(OPERATOR) --sim target/release/vllm-sim \
	  --cluster-dir $(CLUSTER_DIR)

## A local cluster, the operator, the example pools and the `kubectl get inferencepools` table.
demo:
	tools/demo.sh

demo-down:
	tools/demo.sh down
