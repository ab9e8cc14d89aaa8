#!/usr/bin/env bash
# The end-to-end cluster: the control plane of tests/cluster/cluster.sh plus
# one real node (containerd, kubelet, kube-scheduler, the cluster-DNS
# stand-in) and the project's images loaded into containerd.
#
#   e2e.sh start    build what is missing, start, wait for the node to be Ready
#   e2e.sh stop     delete every pod, stop everything, undo every host change
#   e2e.sh status   exit 0 if up, 3 if not
#   e2e.sh build    build the Kubernetes binaries and the images only
#
# Environment: MPIJOB_E2E_DIR (state dir, default /tmp/mpijob-e2e), and
# cluster.sh's MPIJOB_CACHE and MPIJOB_CLUSTER_TIMEOUT. Needs root.
# See tests/e2e/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export MPIJOB_CLUSTER_DIR="${MPIJOB_E2E_DIR:-/tmp/mpijob-e2e}"
export MPIJOB_CLUSTER_NODE=1
export MPIJOB_CLUSTER_TIMEOUT="${MPIJOB_CLUSTER_TIMEOUT:-240}"
case "${1:-}" in
  build)
    "${here}/../cluster/cluster.sh" build cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl cmd/kubelet cmd/kube-scheduler
    exec "${here}/images.sh" build
    ;;
  start | stop | status) exec "${here}/../cluster/cluster.sh" "$1" ;;
  *)
    sed -n '2,13s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
