# Motadata FaaS — common tasks. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## run the platform locally: control plane, operator, samples, backing services, runtime
	scripts/local.sh up

.PHONY: demo
demo: ## ask the sample Agent of `make run` a question again; fails unless it answers through a tool
	scripts/local.sh demo

.PHONY: down
down: ## stop everything `make run` started
	scripts/local.sh down

.PHONY: status
status: ## show the local platform's resources and processes
	scripts/local.sh status

.PHONY: test
test: ## run every test: unit, reconcile, runtime (real Postgres/Redis/NATS), schemathesis, chart, e2e (real API server)
	scripts/test.sh

.PHONY: test-unit
test-unit: ## tests that need no backing service or cluster (model, crds, operator, encoder)
	$(CARGO) test -p faas-model -p faas-crds -p faas-operator -p faas-encoder

.PHONY: test-runtime
test-runtime: ## runtime tests against real Postgres (pgvector), Redis, NATS and the embedding model's files
	scripts/services.sh install && scripts/services.sh up && . "$$(scripts/services.sh env)" && . "$$(scripts/models.sh env)" && $(CARGO) test -p faas-runtime

.PHONY: e2e
e2e: ## chart checks and the e2e suite on a local control plane
	tests/e2e/run.sh

.PHONY: lint
lint: ## formatting and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: build
build: ## build every binary
	$(CARGO) build --workspace

.PHONY: generate
generate: ## regenerate the CRD YAML and manifests/install.yaml from their sources
	$(CARGO) run -q -p faas-crds --bin crdgen
	manifests/render.sh

.PHONY: controlplane
controlplane: ## build the local control plane binaries (kube-apiserver, etcd, kwok, kubectl, helm)
	tests/e2e/controlplane/build.sh

.PHONY: cluster-up cluster-down
cluster-up: ## start a bare local control plane
	tests/e2e/cluster.sh up
cluster-down: ## stop it
	tests/e2e/cluster.sh down

.PHONY: services-up services-down
services-up: ## start Postgres (pgvector), Redis and NATS on loopback
	scripts/services.sh install && scripts/services.sh up
services-down: ## stop them
	scripts/services.sh down

include mk/kind.mk
