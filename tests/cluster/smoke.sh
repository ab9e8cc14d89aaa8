#!/usr/bin/env bash
# Smoke test for a cluster started by cluster.sh: namespaces get a default
# ServiceAccount, a CRD and custom resources work (the reflect2 regression
# crashed the API server here), and owner-reference garbage collection works.
#
#   tests/cluster/cluster.sh start && tests/cluster/smoke.sh
set -euo pipefail

DIR="${MPIJOB_CLUSTER_DIR:-/tmp/mpijob-cluster}"
[[ -f "${DIR}/env" ]] || { echo "smoke: no cluster in ${DIR} (run cluster.sh start)" >&2; exit 1; }
# shellcheck disable=SC1091
source "${DIR}/env"

NS="smoke-$$"
CRD="smokewidgets.smoke.mpijob.test"
step() { printf '[smoke] %s\n' "$*" >&2; }
fail() { printf '[smoke] FAIL: %s\n' "$*" >&2; exit 1; }
cleanup() {
  kubectl delete namespace "${NS}" --wait=false >/dev/null 2>&1 || true
  kubectl delete crd "${CRD}" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

# wait_until SECONDS CMD... : retry CMD every 0.5 s.
wait_until() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

step "namespaces"
kubectl get ns >&2

step "namespace ${NS} gets its default ServiceAccount"
kubectl create namespace "${NS}" >&2
wait_until 30 kubectl -n "${NS}" get serviceaccount default || fail "no default ServiceAccount in ${NS}"

step "CRD ${CRD} and a custom resource"
kubectl apply -f - >&2 <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${CRD}
spec:
  group: smoke.mpijob.test
  scope: Namespaced
  names: {plural: smokewidgets, singular: smokewidget, kind: SmokeWidget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              labels: {type: object, additionalProperties: {type: string}}
          status:
            type: object
            properties:
              phase: {type: string}
EOF
kubectl wait --for=condition=Established "crd/${CRD}" --timeout=30s >&2
wait_until 30 kubectl -n "${NS}" get smokewidgets || fail "CRD not served"
kubectl -n "${NS}" apply -f - >&2 <<'EOF'
apiVersion: smoke.mpijob.test/v1
kind: SmokeWidget
metadata: {name: w1}
spec: {size: 3, labels: {"a": "b", "c": "d"}}
EOF
kubectl -n "${NS}" patch smokewidget w1 --type=merge -p '{"spec":{"size":4}}' >&2
[[ "$(kubectl -n "${NS}" get smokewidget w1 -o jsonpath='{.spec.size}')" == 4 ]] || fail "custom resource not updated"
kubectl get --raw /readyz >/dev/null || fail "API server not ready after custom resource writes"

step "pod creation is admitted (ServiceAccount admission)"
kubectl -n "${NS}" create -f - >&2 <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: p1}
spec: {containers: [{name: c, image: smoke.invalid/none}]}
EOF

step "garbage collection of an owned ConfigMap"
kubectl -n "${NS}" create configmap owner >&2
uid="$(kubectl -n "${NS}" get configmap owner -o jsonpath='{.metadata.uid}')"
kubectl -n "${NS}" create -f - >&2 <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: "${uid}"}
EOF
kubectl -n "${NS}" delete configmap owner >&2
gone() { ! kubectl -n "${NS}" get configmap dependent >/dev/null 2>&1; }
wait_until 30 gone || fail "dependent ConfigMap was not garbage-collected"

step "OK"
