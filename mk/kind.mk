# kind targets for users with Docker: the same chart, samples and e2e suite as the local
# control plane, on a kind cluster running the real images.
#
#   make kind-up image kind-load deploy   # cluster, images, operator in the cluster
#   make e2e-kind                          # chart checks and the tests/e2e suite on kind
#   make kind-down

KIND           ?= kind
DOCKER         ?= docker
HELM           ?= helm
KUBECTL        ?= kubectl
KIND_CLUSTER   ?= faas
KIND_NODE_IMAGE ?= kindest/node:v1.37.2
KIND_KUBECONFIG ?= $(CURDIR)/.cache/kind/$(KIND_CLUSTER).kubeconfig
IMAGE_REPO     ?= motadata
IMAGE_TAG      ?= dev
OPERATOR_IMAGE ?= $(IMAGE_REPO)/faas-operator:$(IMAGE_TAG)
RUNTIME_IMAGE  ?= $(IMAGE_REPO)/faas-runtime:$(IMAGE_TAG)
FAAS_NAMESPACE ?= faas-system
# The e2e suite reads its cluster from FAAS_E2E_KUBECONFIG; override to pass test filters.
E2E_KIND_CMD   ?= cargo test -p faas-e2e -- --test-threads=1

.PHONY: kind-up kind-down image kind-load deploy e2e-kind

kind-up: ## Create the kind cluster (1 control plane, 2 workers) unless it exists
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	@$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config kind-config.yaml --image $(KIND_NODE_IMAGE) --wait 120s
	$(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	@echo "KUBECONFIG=$(KIND_KUBECONFIG)"

kind-down: ## Delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)
	rm -f $(KIND_KUBECONFIG)

image: ## Build the operator and runtime images
	$(DOCKER) build --target operator -t $(OPERATOR_IMAGE) .
	$(DOCKER) build --target runtime -t $(RUNTIME_IMAGE) .

kind-load: ## Load both images into the kind nodes
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(OPERATOR_IMAGE) $(RUNTIME_IMAGE)

deploy: ## Install or upgrade the chart (CRDs included) with the locally built images
	KUBECONFIG=$(KIND_KUBECONFIG) $(HELM) upgrade --install faas-operator charts/faas-operator \
	  --namespace $(FAAS_NAMESPACE) --create-namespace \
	  --set image.repository=$(IMAGE_REPO)/faas-operator --set image.tag=$(IMAGE_TAG) \
	  --set image.pullPolicy=Never \
	  --set runtime.image.repository=$(IMAGE_REPO)/faas-runtime --set runtime.image.tag=$(IMAGE_TAG) \
	  --wait --timeout 5m

# The suite runs the operator itself, as a local process under the chart's RBAC, so an
# operator installed by `deploy` is scaled to zero first: two operators with different
# Leases would both reconcile. Generated workloads run the runtime image built here; unlike
# kwok's simulated pods, they become Ready only when the Postgres, Redis and NATS URLs in the
# Secrets the tests create answer from inside the cluster.
e2e-kind: kind-up image kind-load ## Chart checks and the e2e suite against kind
	-KUBECONFIG=$(KIND_KUBECONFIG) $(KUBECTL) -n $(FAAS_NAMESPACE) scale deployment/faas-operator --replicas=0 2>/dev/null
	KUBECONFIG=$(KIND_KUBECONFIG) HELM=$(HELM) KUBECTL=$(KUBECTL) tests/e2e/chart.sh
	FAAS_E2E_KUBECONFIG=$(KIND_KUBECONFIG) FAAS_RUNTIME_IMAGE=$(RUNTIME_IMAGE) $(E2E_KIND_CMD)
