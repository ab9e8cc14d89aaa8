#!/usr/bin/env bash
# Test cluster harness: a real etcd + kube-apiserver + kube-controller-manager
# on loopback, built from Debian's `kubernetes` source package.
#
#   cluster.sh build    build (once) and cache the Kubernetes binaries
#   cluster.sh start    start the cluster (building first if needed)
#   cluster.sh stop     stop what `start` started and remove the state dir
#   cluster.sh status   say whether the cluster is up (exit 0 if up, 3 if not)
#
# Environment:
#   MPIJOB_CACHE          cache root            (default /var/cache/mpijob)
#   MPIJOB_CLUSTER_DIR    cluster state dir     (default /tmp/mpijob-cluster)
#   MPIJOB_CLUSTER_TIMEOUT  seconds to wait for readiness (default 120)
#
# See tests/cluster/README.md.
set -euo pipefail

# ---------------------------------------------------------------- settings --

# Upstream part of the Debian version of the `kubernetes` source package.
readonly K8S_DEB_UPSTREAM="1.20.5+really1.20.2"
# Directory name inside the orig tarball / after dpkg-source -x.
readonly K8S_SRC_NAME="kubernetes-${K8S_DEB_UPSTREAM}"

readonly CACHE_ROOT="${MPIJOB_CACHE:-/var/cache/mpijob}"
readonly K8S_CACHE="${CACHE_ROOT}/kubernetes-${K8S_DEB_UPSTREAM}"
readonly BIN_DIR="${K8S_CACHE}/bin"
# Lists, one per line, the binaries in BIN_DIR whose build finished.
readonly BUILD_STAMP="${BIN_DIR}/.built"
readonly DL_DIR="${K8S_CACHE}/download"
readonly SRC_PARENT="${K8S_CACHE}/src"
readonly SRC_DIR="${SRC_PARENT}/${K8S_SRC_NAME}"
readonly SRC_STAMP="${SRC_PARENT}/.prepared"

# `make WHAT=` targets built by default. A later e2e harness can add
# cmd/kubelet and cmd/kube-scheduler by calling build_kubernetes with them.
readonly DEFAULT_TARGETS=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl)

readonly REFLECT2_SRC="/usr/share/gocode/src/github.com/modern-go/reflect2"
readonly DEB_SRC_LIST="/etc/apt/sources.list.d/mpijob-deb-src.sources"

readonly BUILD_PACKAGES=(golang-go make rsync jq golang-github-modern-go-reflect2-dev dpkg-dev xz-utils)
readonly RUN_PACKAGES=(etcd-server openssl)

CLUSTER_DIR="${MPIJOB_CLUSTER_DIR:-/tmp/mpijob-cluster}"
# Absolute path: it is matched against /proc/PID/cmdline.
case "${CLUSTER_DIR}" in
  /*) ;;
  *) CLUSTER_DIR="${PWD}/${CLUSTER_DIR}" ;;
esac
readonly CLUSTER_DIR
readonly TIMEOUT="${MPIJOB_CLUSTER_TIMEOUT:-120}"
# Components in start order; stop goes in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
# Other process names that `stop` looks for by our state dir.
LEFTOVER_NAMES=()
# `job`: the real Job controller runs Kubeflow launchers (batch/v1 Jobs),
# creating their pods for the kubelet stand-in and keeping their status.
KCM_CONTROLLERS="garbagecollector,job,namespace,serviceaccount,serviceaccount-token"
# Service ClusterIPs: in the benchmark range 198.18.0.0/15, like the e2e
# node's pod addresses, so that nothing looks like another network.
readonly SERVICE_CIDR="198.19.240.0/24"

# MPIJOB_CLUSTER_NODE=1 adds a real node (containerd, kubelet, scheduler,
# cluster DNS): the end-to-end cluster of tests/e2e.
readonly NODE_MODE="${MPIJOB_CLUSTER_NODE:-0}"
if [[ "${NODE_MODE}" == 1 ]]; then
  # shellcheck source=tests/e2e/node.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../e2e/node.sh"
fi
readonly COMPONENTS LEFTOVER_NAMES KCM_CONTROLLERS

# ----------------------------------------------------------------- helpers --

log() { printf '[cluster.sh] %s\n' "$*" >&2; }
die() { printf '[cluster.sh] ERROR: %s\n' "$*" >&2; exit 1; }

now() { date +%s; }

# Locks (flock, util-linux): fd 8 guards the build cache, fd 9 the cluster
# state dir, so concurrent callers wait instead of colliding. launch closes
# both fds so that the daemons do not keep holding them.
take_build_lock() {
  mkdir -p "${CACHE_ROOT}"
  exec 8>"${CACHE_ROOT}/.kubernetes-${K8S_DEB_UPSTREAM}.lock"
  flock -n 8 || { log "waiting for another build (lock ${CACHE_ROOT}/.kubernetes-${K8S_DEB_UPSTREAM}.lock)"; flock 8; }
}
release_build_lock() { exec 8>&-; }

take_cluster_lock() {
  mkdir -p "$(dirname "${CLUSTER_DIR}")"
  exec 9>"${CLUSTER_DIR}.lock"
  flock -n 9 || { log "waiting for another start/stop on ${CLUSTER_DIR} (lock ${CLUSTER_DIR}.lock)"; flock 9; }
}

# ensure_packages PKG...: shared with the other harness scripts.
# shellcheck source=tests/cluster/packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/packages.sh"

# ensure_deb_src: make `apt-get source` work by adding deb-src entries that
# mirror the existing deb entries (deb822 *.sources and one-line sources.list).
ensure_deb_src() {
  if apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes$'; then
    return 0
  fi
  [[ ${EUID} -eq 0 ]] || die "no deb-src entries for apt; run as root once so they can be added"
  log "adding deb-src entries in ${DEB_SRC_LIST}"
  local tmp f
  tmp="$(mktemp)"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e "${f}" && "${f}" != "${DEB_SRC_LIST}" ]] || continue
    # Keep stanzas whose Types include "deb"; turn them into deb-src stanzas.
    awk '
      function flush() {
        if (stanza != "" && isdeb) printf "%s\n", stanza
        stanza = ""; isdeb = 0
      }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/ {
        for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1
        stanza = stanza "Types: deb-src\n"; next
      }
      { stanza = stanza $0 "\n" }
      END { flush() }
    ' "${f}" >>"${tmp}"
  done
  if [[ -f /etc/apt/sources.list ]]; then
    local line
    while IFS= read -r line; do
      [[ "${line}" =~ ^deb[[:space:]] ]] || continue
      # One-line format cannot go into a .sources file; write a .list instead.
      printf '%s\n' "deb-src${line#deb}" >>"${DEB_SRC_LIST%.sources}.list"
    done </etc/apt/sources.list
  fi
  if [[ -s "${tmp}" ]]; then
    install -m 0644 "${tmp}" "${DEB_SRC_LIST}"
  fi
  rm -f "${tmp}"
  apt-get update -q >&2
  apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes$' ||
    die "apt still cannot find the kubernetes source package after adding deb-src entries"
}

# prepare_source: download, unpack (with Debian's patches), and patch the tree.
prepare_source() {
  if [[ -f "${SRC_STAMP}" && -d "${SRC_DIR}" ]]; then
    log "source tree ready: ${SRC_DIR}"
    return 0
  fi
  ensure_packages "${BUILD_PACKAGES[@]}"

  local dsc
  dsc="$(compgen -G "${DL_DIR}/kubernetes_${K8S_DEB_UPSTREAM}-*.dsc" | sort | tail -n 1 || true)"
  if [[ -z "${dsc}" ]]; then
    ensure_deb_src
    log "downloading Debian source package kubernetes into ${DL_DIR}"
    rm -rf "${DL_DIR}"
    mkdir -p "${DL_DIR}"
    (cd "${DL_DIR}" && apt-get source -q --download-only -o APT::Sandbox::User=root kubernetes >&2)
    dsc="$(compgen -G "${DL_DIR}/kubernetes_${K8S_DEB_UPSTREAM}-*.dsc" | sort | tail -n 1 || true)"
    [[ -n "${dsc}" ]] || die "apt-get source did not fetch kubernetes ${K8S_DEB_UPSTREAM} (got: $(ls "${DL_DIR}"))"
  fi

  log "unpacking ${dsc##*/} (with Debian patches) into ${SRC_PARENT}"
  rm -rf "${SRC_PARENT}"
  mkdir -p "${SRC_PARENT}"
  local tree="${SRC_PARENT}/.unpack"
  dpkg-source -q -x "${dsc}" "${tree}" >&2

  # reflect2 1.0.1 (vendored) reads Go's map internals in a way that breaks
  # under Go >= 1.18: kube-apiserver dies with SIGSEGV in mapiterinit on the
  # first custom resource write. Debian's 1.0.2 supports Go 1.18+.
  log "replacing vendor/github.com/modern-go/reflect2 (1.0.1) with Debian's ${REFLECT2_SRC}"
  [[ -f "${REFLECT2_SRC}/reflect2.go" ]] || die "missing ${REFLECT2_SRC} (golang-github-modern-go-reflect2-dev)"
  local vend="${tree}/vendor/github.com/modern-go/reflect2"
  rm -rf "${vend}"
  mkdir -p "${vend}"
  cp -rL "${REFLECT2_SRC}/." "${vend}/"
  rm -f "${vend}/go.mod" "${vend}/go.sum"
  # vendor/modules.txt still says v1.0.1; that is only version metadata, and
  # Go's vendor consistency check compares modules.txt with go.mod, not with
  # the files, so it is left as is.

  # GOPATH layout used by debian/rules.
  mkdir -p "${tree}/.go/src/k8s.io"
  ln -sfn ../../.. "${tree}/.go/src/k8s.io/kubernetes"

  mv "${tree}" "${SRC_DIR}"
  touch "${SRC_STAMP}"
}

# is_built NAME : the binary exists and its build completed.
is_built() {
  [[ -x "${BIN_DIR}/$1" && -f "${BUILD_STAMP}" ]] && grep -qxF "$1" "${BUILD_STAMP}"
}

# build_kubernetes TARGET... : build `make WHAT=` targets (e.g. cmd/kubelet)
# that are not cached yet, and install them into BIN_DIR.
build_kubernetes() {
  (($# > 0)) || set -- "${DEFAULT_TARGETS[@]}"
  local needed=() t
  for t in "$@"; do
    is_built "${t##*/}" || needed+=("${t}")
  done
  if ((${#needed[@]} == 0)); then
    log "binaries cached in ${BIN_DIR}: $(printf '%s ' "${@##*/}")"
    return 0
  fi
  take_build_lock
  # Another process may have built them while we waited for the lock.
  needed=()
  for t in "$@"; do
    is_built "${t##*/}" || needed+=("${t}")
  done
  if ((${#needed[@]} == 0)); then
    release_build_lock
    log "binaries cached in ${BIN_DIR}: $(printf '%s ' "${@##*/}")"
    return 0
  fi

  prepare_source
  # Kubernetes' hack/lib/golang.sh sets GOCACHE to _output/local/go/cache in
  # the source tree, so the Go build cache stays under K8S_CACHE as well and
  # later builds (e.g. adding cmd/kubelet) are incremental.
  mkdir -p "${BIN_DIR}" "${K8S_CACHE}/home"
  log "building ${needed[*]} in ${SRC_DIR} (takes several minutes; log: ${K8S_CACHE}/build.log)"
  local start
  start="$(now)"
  (
    cd "${SRC_DIR}"
    env -u GOROOT -u GOFLAGS -u GO111MODULE \
      PATH="/usr/lib/go/bin:${PATH}" \
      GOPATH="${SRC_DIR}/.go" \
      CGO_ENABLED=0 \
      HOME="${K8S_CACHE}/home" \
      make WHAT="${needed[*]}"
  ) 2>&1 | tee "${K8S_CACHE}/build.log" >&2

  local name
  for t in "${needed[@]}"; do
    name="${t##*/}"
    [[ -x "${SRC_DIR}/_output/bin/${name}" ]] || die "build did not produce _output/bin/${name}"
    install -m 0755 "${SRC_DIR}/_output/bin/${name}" "${BIN_DIR}/.${name}.tmp"
    mv -f "${BIN_DIR}/.${name}.tmp" "${BIN_DIR}/${name}"
  done
  # Only now record them as built.
  {
    [[ -f "${BUILD_STAMP}" ]] && cat "${BUILD_STAMP}"
    for t in "${needed[@]}"; do printf '%s\n' "${t##*/}"; done
  } | sort -u >"${BUILD_STAMP}.tmp"
  mv -f "${BUILD_STAMP}.tmp" "${BUILD_STAMP}"
  release_build_lock
  log "built ${needed[*]} in $(($(now) - start)) s into ${BIN_DIR}"
}

# ------------------------------------------------------------ process mgmt --

pidfile() { printf '%s/pids/%s.pid' "${CLUSTER_DIR}" "$1"; }

# binary path for a component
component_bin() {
  case "$1" in
    etcd) command -v etcd || printf '/usr/bin/etcd' ;;
    *) printf '%s/%s' "${BIN_DIR}" "$1" ;;
  esac
}

# is_ours NAME PID : PID is alive (not a zombie), runs NAME's binary and
# refers to our state dir on its command line.
is_ours() {
  local name=$1 pid=$2 state cmd arg0
  [[ "${pid}" =~ ^[0-9]+$ && -r "/proc/${pid}/cmdline" ]] || return 1
  state="$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null || true)"
  [[ -n "${state}" && "${state}" != Z && "${state}" != X ]] || return 1
  cmd="$(tr '\0' '\n' <"/proc/${pid}/cmdline" 2>/dev/null || true)"
  arg0="$(head -n 1 <<<"${cmd}")"
  [[ "${arg0##*/}" == "${name}" ]] || return 1
  grep -qF -- "${CLUSTER_DIR}/" <<<"${cmd}"
}

# recorded_pid NAME : print the recorded pid if it is ours and alive.
recorded_pid() {
  local f pid
  f="$(pidfile "$1")"
  [[ -f "${f}" ]] || return 1
  pid="$(cat "${f}")"
  is_ours "$1" "${pid}" || return 1
  printf '%s' "${pid}"
}

# launch NAME CMD... : start CMD detached (own session, immune to SIGHUP,
# stdin from /dev/null), log to logs/NAME.log, pid to pids/NAME.pid.
launch() {
  local name=$1
  shift
  local pf log
  pf="$(pidfile "${name}")"
  log="${CLUSTER_DIR}/logs/${name}.log"
  rm -f "${pf}"
  # The inner shell closes every fd above 2 (so the daemon holds no pipe or
  # lock of the caller's), writes its own pid and then execs the binary, so
  # the recorded pid is the binary's whatever setsid does about forking.
  # shellcheck disable=SC2016
  setsid nohup bash -c '
    for f in /proc/$$/fd/*; do
      n=${f##*/}
      if [ "$n" -gt 2 ]; then exec {n}>&-; fi
    done
    echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "${pf}" "$@" \
    </dev/null >"${log}" 2>&1 8>&- 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "${pf}" ]] && break
    sleep 0.1
  done
  [[ -s "${pf}" ]] || die "${name} did not start (see ${log})"
  log "started ${name} (pid $(cat "${pf}"), log ${log})"
}

# stop_component NAME
stop_component() {
  local name=$1 f pid i
  f="$(pidfile "${name}")"
  [[ -f "${f}" ]] || return 0
  pid="$(cat "${f}")"
  if ! is_ours "${name}" "${pid}"; then
    if [[ -d "/proc/${pid}" ]]; then
      log "${name}: pid ${pid} is not ${name} from ${CLUSTER_DIR}; not touching it"
    else
      log "${name}: not running (pid ${pid} has exited)"
    fi
    rm -f "${f}"
    return 0
  fi
  log "stopping ${name} (pid ${pid})"
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    is_ours "${name}" "${pid}" || break
    sleep 0.1
  done
  if is_ours "${name}" "${pid}"; then
    log "${name} did not exit after SIGTERM; sending SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      is_ours "${name}" "${pid}" || break
      sleep 0.1
    done
    is_ours "${name}" "${pid}" && die "${name} (pid ${pid}) survived SIGKILL"
  fi
  # Reap it if it happens to be our own child (failed start in this process).
  wait "${pid}" 2>/dev/null || true
  rm -f "${f}"
}

stop_all() {
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop_component "${COMPONENTS[i]}"
  done
}

# leftovers : print "NAME PID" for live processes that run one of our
# components with our state dir on the command line (e.g. a pid file was lost).
leftovers() {
  local d c pid arg0
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    arg0=""
    { IFS= read -r -d '' arg0 <"${d}/cmdline"; } 2>/dev/null || true
    for c in "${COMPONENTS[@]}" "${LEFTOVER_NAMES[@]}"; do
      if [[ "${arg0##*/}" == "${c}" ]] && is_ours "${c}" "${pid}"; then
        printf '%s %s\n' "${c}" "${pid}"
      fi
    done
  done
}

# --------------------------------------------------------------- cluster ----

free_port() {
  # Pick a random port below the ephemeral range (32768+) that nothing on
  # loopback accepts connections on and that is not in USED_PORTS (the
  # caller appends each result, since this runs in a command substitution).
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [[ " ${USED_PORTS:-} " == *" ${p} "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
      printf '%s' "${p}"
      return 0
    fi
  done
  die "no free loopback port found"
}

kubectl_admin() {
  "${BIN_DIR}/kubectl" --kubeconfig "${CLUSTER_DIR}/kubeconfig" --request-timeout=5s "$@"
}

apiserver_ready() {
  [[ -f "${CLUSTER_DIR}/kubeconfig" ]] || return 1
  [[ "$(kubectl_admin get --raw /readyz 2>/dev/null)" == ok ]]
}

# healthy: all components alive and the API server ready.
healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do
    recorded_pid "${c}" >/dev/null || return 1
  done
  apiserver_ready
}

write_kubeconfig() {
  local file=$1 server=$2 token=$3 user=$4
  (umask 077 && cat >"${file}") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mpijob
  cluster:
    server: ${server}
    certificate-authority: ${CLUSTER_DIR}/certs/apiserver.crt
users:
- name: ${user}
  user:
    token: ${token}
contexts:
- name: mpijob
  context:
    cluster: mpijob
    user: ${user}
    namespace: default
current-context: mpijob
EOF
}

# fail_start COMPONENT MESSAGE : print the component's log tail, stop
# everything, keep the logs, and exit non-zero.
fail_start() {
  local comp=$1 msg=$2
  printf '[cluster.sh] ERROR: %s\n' "${msg}" >&2
  printf '[cluster.sh] ---- last 40 lines of %s ----\n' "${CLUSTER_DIR}/logs/${comp}.log" >&2
  tail -n 40 "${CLUSTER_DIR}/logs/${comp}.log" >&2 || true
  printf '[cluster.sh] ---- end of %s log ----\n' "${comp}" >&2
  if [[ "${NODE_MODE}" == 1 ]]; then node_stop; fi
  stop_all
  log "stopped the partial cluster; logs kept in ${CLUSTER_DIR}/logs (\`$0 stop\` removes them)"
  exit 1
}

# check_alive : fail if a started component has died.
check_alive() {
  local c
  for c in "${COMPONENTS[@]}"; do
    [[ -f "$(pidfile "${c}")" ]] || continue
    recorded_pid "${c}" >/dev/null || fail_start "${c}" "${c} exited during start-up"
  done
}

print_env() {
  cat "${CLUSTER_DIR}/env"
}

cmd_start() {
  if [[ -d "${CLUSTER_DIR}" ]]; then
    if healthy; then
      log "cluster in ${CLUSTER_DIR} is already running and healthy"
      print_env
      return 0
    fi
    log "found a stale or broken cluster in ${CLUSTER_DIR}; cleaning it up"
    cmd_stop
  fi

  build_kubernetes "${DEFAULT_TARGETS[@]}"
  ensure_packages "${RUN_PACKAGES[@]}"
  if [[ "${NODE_MODE}" == 1 ]]; then node_prepare; fi

  local t0
  t0="$(now)"
  mkdir -p "${CLUSTER_DIR}"/{pids,logs,certs,etcd,kcm-certs}
  chmod 700 "${CLUSTER_DIR}"
  local d="${CLUSTER_DIR}"

  local etcd_port peer_port api_port kcm_port
  USED_PORTS=""
  etcd_port="$(free_port)"
  USED_PORTS+=" ${etcd_port}"
  peer_port="$(free_port)"
  USED_PORTS+=" ${peer_port}"
  api_port="$(free_port)"
  USED_PORTS+=" ${api_port}"
  kcm_port="$(free_port)"
  printf 'etcd=%s\netcd_peer=%s\napiserver=%s\ncontroller_manager=%s\n' \
    "${etcd_port}" "${peer_port}" "${api_port}" "${kcm_port}" >"${d}/ports"

  local token
  token="$(openssl rand -hex 24)"
  (
    umask 077
    printf '%s,admin,admin,"system:masters"\n' "${token}" >"${d}/tokens.csv"
    openssl genrsa -out "${d}/certs/sa.key" 2048 2>/dev/null
  )

  local server="https://127.0.0.1:${api_port}"
  write_kubeconfig "${d}/kubeconfig" "${server}" "${token}" admin
  write_kubeconfig "${d}/controller-manager.kubeconfig" "${server}" "${token}" admin
  # $PATH stays literal so that sourcing the file prepends to the caller's PATH.
  # shellcheck disable=SC2016
  printf 'export KUBECONFIG=%s\nexport PATH=%s:$PATH\n' "${d}/kubeconfig" "${BIN_DIR}" >"${d}/env"
  # The test support finds the matching kubectl here.
  ln -sfn "${BIN_DIR}" "${d}/bin"

  local etcd_url="http://127.0.0.1:${etcd_port}" peer_url="http://127.0.0.1:${peer_port}"
  launch etcd "$(component_bin etcd)" \
    --name=mpijob \
    --data-dir="${d}/etcd" \
    --listen-client-urls="${etcd_url}" \
    --advertise-client-urls="${etcd_url}" \
    --listen-peer-urls="${peer_url}" \
    --initial-advertise-peer-urls="${peer_url}" \
    --initial-cluster="mpijob=${peer_url}" \
    --initial-cluster-state=new \
    --logger=zap

  launch kube-apiserver "$(component_bin kube-apiserver)" \
    --etcd-servers="${etcd_url}" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="${api_port}" \
    --insecure-port=0 \
    --cert-dir="${d}/certs" \
    --token-auth-file="${d}/tokens.csv" \
    --service-account-key-file="${d}/certs/sa.key" \
    --service-account-signing-key-file="${d}/certs/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --authorization-mode=RBAC \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --kubelet-preferred-address-types=InternalIP \
    --allow-privileged=true

  # The API server writes its self-signed cert at start-up; the controller
  # manager needs it as --root-ca-file.
  local deadline=$((t0 + TIMEOUT))
  while [[ ! -s "${d}/certs/apiserver.crt" ]]; do
    check_alive
    (($(now) < deadline)) || fail_start kube-apiserver "timed out after ${TIMEOUT}s waiting for ${d}/certs/apiserver.crt"
    sleep 0.2
  done

  launch kube-controller-manager "$(component_bin kube-controller-manager)" \
    --kubeconfig="${d}/controller-manager.kubeconfig" \
    --controllers="${KCM_CONTROLLERS}" \
    --service-account-private-key-file="${d}/certs/sa.key" \
    --root-ca-file="${d}/certs/apiserver.crt" \
    --use-service-account-credentials=false \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port="${kcm_port}" \
    --port=0 \
    --cert-dir="${d}/kcm-certs"

  log "waiting for the API server at ${server} (timeout ${TIMEOUT}s)"
  until apiserver_ready; do
    check_alive
    (($(now) < deadline)) || fail_start kube-apiserver "timed out after ${TIMEOUT}s waiting for ${server}/readyz"
    sleep 0.5
  done
  log "API server ready after $(($(now) - t0)) s; waiting for ServiceAccount default/default"
  until kubectl_admin -n default get serviceaccount default >/dev/null 2>&1; do
    check_alive
    (($(now) < deadline)) || fail_start kube-controller-manager "timed out after ${TIMEOUT}s waiting for ServiceAccount default/default"
    sleep 0.5
  done
  if [[ "${NODE_MODE}" == 1 ]]; then node_start "${deadline}"; fi
  log "cluster ready in $(($(now) - t0)) s: ${server}, state in ${d}"
  log "to use it:  source ${d}/env   (or eval \"\$($0 start)\")"
  print_env
}

cmd_stop() {
  if [[ ! -d "${CLUSTER_DIR}" ]]; then
    log "no cluster state in ${CLUSTER_DIR}; nothing to stop"
    return 0
  fi
  if [[ "${NODE_MODE}" == 1 ]]; then node_stop; fi
  stop_all
  local left
  left="$(leftovers)"
  if [[ -n "${left}" ]]; then
    log "processes using ${CLUSTER_DIR} are still running without a matching pid file:"
    printf '  %s\n' "${left}" >&2
    die "not removing ${CLUSTER_DIR}; stop those processes and run \`$0 stop\` again"
  fi
  rm -rf "${CLUSTER_DIR}"
  log "stopped; removed ${CLUSTER_DIR}"
}

cmd_status() {
  if [[ ! -d "${CLUSTER_DIR}" ]]; then
    echo "down (no state in ${CLUSTER_DIR})"
    return 3
  fi
  local c pid up=1
  for c in "${COMPONENTS[@]}"; do
    if pid="$(recorded_pid "${c}")"; then
      echo "${c}: running (pid ${pid})"
    else
      echo "${c}: not running"
      up=0
    fi
  done
  if ((up)) && apiserver_ready; then
    echo "up: $(sed -n 's/^export KUBECONFIG=/KUBECONFIG=/p' "${CLUSTER_DIR}/env")"
    return 0
  fi
  echo "down"
  return 3
}

usage() {
  sed -n '2,14s/^# \{0,1\}//p' "$0" >&2
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "${cmd}" in
    build) build_kubernetes "$@" ;;
    start)
      take_cluster_lock
      cmd_start
      ;;
    stop)
      take_cluster_lock
      cmd_stop
      ;;
    status) cmd_status ;;
    -h | --help | help) usage ;;
    *)
      usage
      exit 2
      ;;
  esac
}

main "$@"
