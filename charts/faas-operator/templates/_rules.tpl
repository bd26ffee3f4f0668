{{/*
The operator's API access, shared by the ClusterRole (all namespaces) and the per-namespace
Roles (watchNamespaces). Least privilege: every verb below has a reason, and nothing is a
wildcard. The Lease rules for leader election are in leader-election-rbac.yaml.
*/}}
{{- define "faas-operator.rules" -}}
# FaasService is the reconcile input: read and watched, never written by the operator.
- apiGroups: ["faas.motadata.io"]
  resources: ["faasservices"]
  verbs: ["get", "list", "watch"]
# Status (conditions, replicas, url) is written by server-side apply (patch); update covers
# clients that replace the status subresource.
- apiGroups: ["faas.motadata.io"]
  resources: ["faasservices/status"]
  verbs: ["get", "patch", "update"]
# Children carry ownerReferences with blockOwnerDeletion; with the
# OwnerReferencesPermissionEnforcement admission plugin that needs update on the owner's
# finalizers subresource. Agents and PromptTemplates have no children, so they need none:
# their own finalizer is in metadata, written with patch below.
- apiGroups: ["faas.motadata.io"]
  resources: ["faasservices/finalizers"]
  verbs: ["update"]
# Agents and PromptTemplates are read and watched as reconcile input (an Agent also reads
# the Agents it calls as tools, a PromptTemplate the Agents that reference it, an agent
# FaasService the Agents it serves, whose tools' Secret keys its pods mount); patch adds
# and removes the finalizer that deletes their rows from Postgres before they go.
- apiGroups: ["faas.motadata.io"]
  resources: ["agents", "prompttemplates"]
  verbs: ["get", "list", "watch", "patch"]
# Their status (conditions, version, endpoint) is written by server-side apply only.
- apiGroups: ["faas.motadata.io"]
  resources: ["agents/status", "prompttemplates/status"]
  verbs: ["patch"]
# Children of a FaasService. get/list/watch: the controller watches what it owns and
# repairs drift. create/patch: server-side apply of the desired object. delete: prune
# children no longer wanted (ingress or autoscaling removed from the spec).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods are only observed, to tell failing pods (e.g. CrashLoopBackOff) for the Degraded
# condition. Read-only.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Only the Secrets a FaasService or an Agent references (database, cache, NATS, JWT key,
# tool headers) are read, by name, to check that they exist and hold the named key; their
# values are never used. No list or watch, so the operator cannot enumerate Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on FaasServices, Agents and PromptTemplates (create, and patch to count repeats).
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
