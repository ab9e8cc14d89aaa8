# shellcheck shell=bash
# The node half of the end-to-end cluster: containerd, CNI, kube-scheduler,
# kubelet and the cluster-DNS stand-in, next to the control plane that
# tests/cluster/cluster.sh starts. Sourced by cluster.sh when
# MPIJOB_CLUSTER_NODE=1 (tests/e2e/e2e.sh sets it); it uses cluster.sh's
# helpers (log, die, launch, stop_component, ensure_packages, ...).
#
# What it changes on the host, and undoes on stop (see tests/e2e/README.md):
# - a bridge NODE_BRIDGE with NODE_IP/24 (198.19.254.0/24, inside the
#   benchmark range 198.18.0.0/15), no forwarding, no NAT, no routes out;
# - two iptables FORWARD rules dropping anything routed into or out of it;
# - a cgroup NODE_CGROUP under this process's own memory cgroup, in every
#   cgroup v1 hierarchy, as kubelet's cgroupRoot;
# - the kernel tunables kubelet sets at start (restored to their old values);
# - /var/log/pods and /var/log/containers (kubelet's fixed log dirs), and
#   the CNI network namespaces in /var/run/netns, when they are new.

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "${E2E_DIR}/../.." && pwd)"
readonly E2E_DIR REPO_DIR

readonly NODE_PACKAGES=(containerd runc containernetworking-plugins iptables
  debootstrap buildah dnsmasq-base iproute2 util-linux)
readonly NODE_TARGETS=(cmd/kubelet cmd/kube-scheduler)
readonly NODE_NAME="mpijob-e2e-node"
readonly NODE_BRIDGE="mpijobe2e0"
readonly NODE_IP="198.19.254.1"
readonly POD_SUBNET="198.19.254.0/24"
readonly CLUSTER_DOMAIN="cluster.local"
readonly PAUSE_IMAGE="localhost/mpijob-e2e/pause:3.2"
# A port nothing listens on: a pull that should never happen fails at once.
readonly DEAD_PROXY="http://127.0.0.1:9"
# What kubelet's container manager writes into /proc/sys at start.
readonly KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic
  kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# The comment on our iptables rules, so that stop removes exactly ours.
readonly IPT_TAG="mpijob-e2e"

COMPONENTS+=(kube-scheduler cluster-dns containerd kubelet)
# Processes that belong to the node but are not started by launch: they are
# found by our state dir on their command line.
LEFTOVER_NAMES+=(containerd-shim-runc-v2 dnsmasq)
KCM_CONTROLLERS+=",endpoint,deployment,replicaset,nodelifecycle"

list_netns() {
  # A machine that never had a named network namespace has no
  # /var/run/netns: that is an empty list, not a failure (find's error
  # would end the script under pipefail).
  [[ -d /var/run/netns ]] || return 0
  find /var/run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' | sort
}

node_dir() { printf '%s/node' "${CLUSTER_DIR}"; }
containerd_sock() { printf '%s/node/containerd/containerd.sock' "${CLUSTER_DIR}"; }

ctr_k8s() { ctr --address "$(containerd_sock)" --namespace k8s.io "$@"; }

# ------------------------------------------------------------------ cgroups --

own_memory_cgroup() {
  awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3; exit }' /proc/self/cgroup
}

# v1 hierarchies: every cgroup mount under /sys/fs/cgroup but the unified one.
cgroup_hierarchies() {
  awk '$3 == "cgroup" && $2 ~ "^/sys/fs/cgroup/" { print $2 }' /proc/mounts
}

# Every cgroup mount, the unified (v2) one of a hybrid host included: runc
# creates the containers' cgroups there too.
all_cgroup_mounts() {
  awk '($3 == "cgroup" || $3 == "cgroup2") && $2 ~ "^/sys/fs/cgroup" { print $2 }' /proc/mounts
}

# node_cgroup_create PATH : create PATH (e.g. /process_api/x/mpijob-e2e) in
# every hierarchy, each new level recorded so that stop removes exactly it;
# cpuset levels get their parent's cpus and mems, or nothing can join them.
node_cgroup_create() {
  local path=$1 h rel dir parent
  for h in $(cgroup_hierarchies); do
    rel=""
    local IFS=/
    for part in ${path#/}; do
      rel+="/${part}"
      dir="${h}${rel}"
      [[ -d "${dir}" ]] && continue
      mkdir "${dir}"
      printf '%s\n' "${dir}" >>"$(node_dir)/cgroups.created"
      if [[ -f "${dir}/cpuset.cpus" ]]; then
        parent="$(dirname "${dir}")"
        cat "${parent}/cpuset.cpus" >"${dir}/cpuset.cpus"
        cat "${parent}/cpuset.mems" >"${dir}/cpuset.mems"
      fi
    done
    unset IFS
  done
}

# node_cgroup_remove : remove every cgroup below the node's root (kubelet's
# kubepods tree included), then the levels we created, deepest first.
node_cgroup_remove() {
  local f root h dir
  f="$(node_dir)/cgroups.created"
  [[ -f "$(node_dir)/cgroup-root" ]] || return 0
  root="$(cat "$(node_dir)/cgroup-root")"
  for h in $(all_cgroup_mounts); do
    [[ -d "${h}${root}" ]] || continue
    find "${h}${root}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "${h}${root}" ]] && log "could not remove cgroup ${h}${root} (still in use?)"
  done
  if [[ -f "${f}" ]]; then
    tac "${f}" | while IFS= read -r dir; do
      [[ -d "${dir}" ]] || continue
      rmdir "${dir}" 2>/dev/null || log "could not remove cgroup ${dir} (still in use?)"
    done
  fi
}

# ---------------------------------------------------------------- network --

ipt_rules() {
  printf '%s\n' "-i ${NODE_BRIDGE} ! -o ${NODE_BRIDGE}" "! -i ${NODE_BRIDGE} -o ${NODE_BRIDGE}"
}

node_net_up() {
  if [[ "$(cat /proc/sys/net/ipv4/ip_forward)" != 0 ]]; then
    log "note: net.ipv4.ip_forward is already 1 on this host (not ours); the DROP rules below still keep ${POD_SUBNET} in"
  fi
  ip link add "${NODE_BRIDGE}" type bridge
  printf 'bridge\n' >>"$(node_dir)/net.created"
  ip addr add "${NODE_IP}/24" dev "${NODE_BRIDGE}"
  # Pod addresses come back after about 240 pods (host-local IPAM wraps
  # around). The host's neighbour entry for a reused address still holds
  # the old pod's MAC, so replies from the node (DNS answers) went nowhere
  # for up to a minute. Short neighbour timers on this bridge (they go with
  # it) make a stale entry fail over to a fresh ARP within about 2 s.
  local n="/proc/sys/net/ipv4/neigh/${NODE_BRIDGE}"
  echo 1000 >"${n}/base_reachable_time_ms"
  echo 1 >"${n}/delay_first_probe_time"
  echo 200 >"${n}/retrans_time_ms"
  ip link set "${NODE_BRIDGE}" up
  local rule
  while IFS= read -r rule; do
    # shellcheck disable=SC2086
    iptables -w -I FORWARD 1 ${rule} -m comment --comment "${IPT_TAG}" -j DROP
  done < <(ipt_rules)
  printf 'iptables\n' >>"$(node_dir)/net.created"
}

node_net_down() {
  local rule
  if grep -qx iptables "$(node_dir)/net.created" 2>/dev/null; then
    while IFS= read -r rule; do
      # shellcheck disable=SC2086
      while iptables -w -D FORWARD ${rule} -m comment --comment "${IPT_TAG}" -j DROP 2>/dev/null; do :; done
    done < <(ipt_rules)
  fi
  if grep -qx bridge "$(node_dir)/net.created" 2>/dev/null && ip link show "${NODE_BRIDGE}" >/dev/null 2>&1; then
    ip link del "${NODE_BRIDGE}"
  fi
}

write_cni_config() {
  local dir
  dir="$(node_dir)/cni"
  mkdir -p "${dir}/net.d" "${dir}/ipam"
  cat >"${dir}/net.d/10-mpijob-e2e.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "mpijob-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${NODE_BRIDGE}",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${POD_SUBNET}", "rangeStart": "198.19.254.10", "rangeEnd": "198.19.254.250"}]],
        "dataDir": "${dir}/ipam"
      }
    }
  ]
}
EOF
}

# ------------------------------------------------------------- containerd --

write_containerd_config() {
  local c
  c="$(node_dir)/containerd"
  mkdir -p "${c}"
  # `containerd config default`, with only the keys below changed; every
  # key left out keeps that default.
  cat >"${c}/config.toml" <<EOF
version = 2
root = "${c}/root"
state = "${c}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${c}/containerd.sock"

[ttrpc]
  address = "${c}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${c}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${c}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$(node_dir)/cni/net.d"
EOF
}

# ---------------------------------------------------------------- kubelet --

write_kubelet_config() {
  local k healthz_port=$1 cgroup_root=$2
  k="$(node_dir)/kubelet"
  mkdir -p "${k}/root" "${k}/pki"
  # No host search domains or nameservers leak into the pods.
  printf '# no host resolvers: pods use the cluster-DNS stand-in only\n' >"${k}/resolv.conf"
  cat >"${k}/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${healthz_port}
# The API server is the only client (logs, exec); it runs on this host.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: ${cgroup_root}
failSwapOn: false
nodeStatusUpdateFrequency: 1s
syncFrequency: 5s
fileCheckFrequency: 5s
clusterDNS: [${NODE_IP}]
clusterDomain: ${CLUSTER_DOMAIN}
resolvConf: ${k}/resolv.conf
makeIPTablesUtilChains: false
serializeImagePulls: false
# One node runs every test's pods, created and deleted in quick succession;
# at the default 5 requests/s kubelet's pod status updates (the pod IP that
# the Endpoints, and so DNS, wait for) lagged by up to a minute.
kubeAPIQPS: 50
kubeAPIBurst: 100
eventRecordQPS: 50
eventBurst: 100
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
EOF
}

# ------------------------------------------------------------ start / stop --

node_prepare() {
  ensure_packages "${NODE_PACKAGES[@]}"
  build_kubernetes "${NODE_TARGETS[@]}"
  log "building the images (cached when unchanged)"
  "${E2E_DIR}/images.sh" build >/dev/null
  if [[ -z "${MPIJOB_CLUSTER_DNS:-}" ]]; then
    log "building the cluster-DNS stand-in (cargo)"
    (
      cd "${REPO_DIR}" || exit 1
      # shellcheck source=/dev/null
      . scripts/cargo-env.sh
      cargo build -q -p mpijob-tests --bin cluster-dns >&2
    )
  fi
}

cluster_dns_bin() {
  if [[ -n "${MPIJOB_CLUSTER_DNS:-}" ]]; then
    printf '%s' "${MPIJOB_CLUSTER_DNS}"
  else
    (
      cd "${REPO_DIR}" || exit 1
      # shellcheck source=/dev/null
      . scripts/cargo-env.sh
      printf '%s/debug/cluster-dns' "${CARGO_TARGET_DIR}"
    )
  fi
}

# node_start DEADLINE : everything after the API server is ready.
node_start() {
  local deadline=$1 nd
  nd="$(node_dir)"
  mkdir -p "${nd}"
  local t0
  t0="$(now)"

  # Host state we may change, recorded before we change it.
  local s
  for s in "${KUBELET_SYSCTLS[@]}"; do
    printf '%s=%s\n' "${s}" "$(sysctl -n "${s}")" >>"${nd}/sysctl.saved"
  done
  local p
  for p in /var/log/pods /var/log/containers /run/containerd; do
    [[ -e "${p}" ]] || printf '%s\n' "${p}" >>"${nd}/paths.created"
  done
  list_netns >"${nd}/netns.before"

  local mem cgroup_root
  mem="$(own_memory_cgroup)"
  [[ -n "${mem}" ]] || die "no memory cgroup in /proc/self/cgroup"
  cgroup_root="${mem%/}/mpijob-$(basename "${CLUSTER_DIR}")"
  printf '%s\n' "${cgroup_root}" >"${nd}/cgroup-root"
  node_cgroup_create "${cgroup_root}"

  if ip link show "${NODE_BRIDGE}" >/dev/null 2>&1; then
    fail_start kube-apiserver "bridge ${NODE_BRIDGE} already exists: another e2e cluster runs on this machine (stop it with tests/e2e/e2e.sh stop, with its MPIJOB_E2E_DIR)"
  fi
  node_net_up
  write_cni_config
  write_containerd_config

  launch containerd env HTTP_PROXY="${DEAD_PROXY}" HTTPS_PROXY="${DEAD_PROXY}" NO_PROXY= \
    containerd --config "${nd}/containerd/config.toml"
  local i
  for ((i = 0; i < 100; i++)); do
    ctr --address "$(containerd_sock)" version >/dev/null 2>&1 && break
    check_alive
    sleep 0.1
  done
  ctr --address "$(containerd_sock)" version >/dev/null 2>&1 || fail_start containerd "containerd did not answer on $(containerd_sock)"
  log "loading the images into containerd"
  "${E2E_DIR}/images.sh" load "$(containerd_sock)" >&2 || fail_start containerd "loading the images failed"

  local sched_port healthz_port
  sched_port="$(free_port)"
  USED_PORTS+=" ${sched_port}"
  healthz_port="$(free_port)"
  launch kube-scheduler "$(component_bin kube-scheduler)" \
    --kubeconfig="${CLUSTER_DIR}/kubeconfig" \
    --authentication-kubeconfig="${CLUSTER_DIR}/kubeconfig" \
    --authorization-kubeconfig="${CLUSTER_DIR}/kubeconfig" \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port="${sched_port}" \
    --port=0 \
    --cert-dir="${nd}/scheduler-certs"

  mkdir -p "${nd}/dns"
  launch cluster-dns "$(cluster_dns_bin)" \
    --kubeconfig "${CLUSTER_DIR}/kubeconfig" \
    --listen "${NODE_IP}" \
    --hosts-file "${nd}/dns/hosts" \
    --domain "${CLUSTER_DOMAIN}"

  write_kubelet_config "${healthz_port}" "${cgroup_root}"
  launch kubelet env AWS_EC2_METADATA_DISABLED=true HTTP_PROXY="${DEAD_PROXY}" HTTPS_PROXY="${DEAD_PROXY}" \
    "$(component_bin kubelet)" \
    --config="${nd}/kubelet/config.yaml" \
    --kubeconfig="${CLUSTER_DIR}/kubeconfig" \
    --root-dir="${nd}/kubelet/root" \
    --cert-dir="${nd}/kubelet/pki" \
    --container-runtime=remote \
    --container-runtime-endpoint="unix://$(containerd_sock)" \
    --image-service-endpoint="unix://$(containerd_sock)" \
    --pod-infra-container-image="${PAUSE_IMAGE}" \
    --hostname-override="${NODE_NAME}" \
    --node-ip="${NODE_IP}" \
    --v=1

  log "waiting for node ${NODE_NAME} to be Ready"
  until [[ "$(kubectl_admin get node "${NODE_NAME}" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; do
    check_alive
    (($(now) < deadline)) || fail_start kubelet "timed out waiting for node ${NODE_NAME} to be Ready"
    sleep 0.5
  done
  # kubelet registers the node with the not-ready taint; the node
  # lifecycle controller removes it once the node is Ready.
  until [[ -z "$(kubectl_admin get node "${NODE_NAME}" -o 'jsonpath={.spec.taints}' 2>/dev/null)" ]]; do
    check_alive
    (($(now) < deadline)) || fail_start kube-controller-manager "timed out waiting for the not-ready taint to leave node ${NODE_NAME}"
    sleep 0.5
  done
  log "node ${NODE_NAME} Ready after $(($(now) - t0)) s (pods ${POD_SUBNET}, DNS ${NODE_IP}, cgroup ${cgroup_root})"
  printf 'node=%s\nnode_ip=%s\ncontainerd=%s\n' "${NODE_NAME}" "${NODE_IP}" "$(containerd_sock)" >>"${CLUSTER_DIR}/ports"
}

# node_drain : delete every pod while the API server and kubelet still run,
# so that kubelet stops each sandbox through CNI (its veth and netns go).
node_drain() {
  recorded_pid kubelet >/dev/null || return 0
  apiserver_ready || return 0
  log "deleting every pod so that kubelet tears the sandboxes down"
  # First what would create them again: Deployments, ReplicaSets, MPIJobs.
  kubectl_admin delete deployments,replicasets --all --all-namespaces --wait=false >/dev/null 2>&1 || true
  kubectl_admin delete mpijobs.batch.tensorstack.dev --all --all-namespaces --wait=false >/dev/null 2>&1 || true
  kubectl_admin delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  local i n
  for ((i = 0; i < 60; i++)); do
    n="$(ctr_k8s tasks ls -q 2>/dev/null | wc -l)"
    ((n == 0)) && return 0
    # A pod created since (by a controller that was still running).
    if ((i % 10 == 9)); then
      kubectl_admin delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  log "still ${n} containers after 30 s; removing them with ctr"
}

# node_ctr_cleanup : after kubelet stopped, remove what is left in containerd.
node_ctr_cleanup() {
  [[ -S "$(containerd_sock)" ]] || return 0
  recorded_pid containerd >/dev/null || return 0
  local id
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks kill -s SIGKILL "${id}" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks delete -f "${id}" >/dev/null 2>&1 || true
  done
  for id in $(ctr_k8s containers ls -q 2>/dev/null); do
    ctr_k8s containers delete "${id}" >/dev/null 2>&1 || true
  done
}

# node_host_cleanup : undo what node_start changed on the host.
node_host_cleanup() {
  local nd
  nd="$(node_dir)"
  [[ -d "${nd}" ]] || return 0
  local pid name
  while read -r name pid; do
    [[ -n "${pid}" ]] || continue
    case " ${LEFTOVER_NAMES[*]} " in
      *" ${name} "*) ;;
      *) continue ;; # the control plane is stop_all's
    esac
    log "killing leftover ${name} (pid ${pid})"
    kill -KILL "${pid}" 2>/dev/null || true
  done < <(leftovers)
  sleep 0.2
  # Mounts under the state dir (secrets, emptyDirs, rootfs), deepest first.
  local m
  while IFS= read -r m; do
    umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || log "could not unmount ${m}"
  done < <(awk -v d="${CLUSTER_DIR}/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  # CNI namespaces that appeared while we ran and are still there.
  if [[ -f "${nd}/netns.before" ]]; then
    local ns
    while IFS= read -r ns; do
      [[ "${ns}" == cni-* ]] || continue
      log "removing leftover network namespace ${ns}"
      ip netns del "${ns}" 2>/dev/null || true
    done < <(comm -13 "${nd}/netns.before" <(list_netns))
  fi
  node_net_down
  node_cgroup_remove
  if [[ -f "${nd}/sysctl.saved" ]]; then
    local line
    while IFS= read -r line; do
      [[ "$(sysctl -n "${line%%=*}")" == "${line#*=}" ]] || sysctl -q -w "${line}" >/dev/null || log "could not restore ${line}"
    done <"${nd}/sysctl.saved"
  fi
  if [[ -f "${nd}/paths.created" ]]; then
    local p
    while IFS= read -r p; do
      rm -rf -- "${p}"
    done <"${nd}/paths.created"
  fi
}

# node_stop : the node's part of `stop`, before the control plane stops.
node_stop() {
  node_drain
  stop_component kubelet
  node_ctr_cleanup
  stop_component containerd
  stop_component cluster-dns
  stop_component kube-scheduler
  node_host_cleanup
}
