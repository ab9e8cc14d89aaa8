#!/usr/bin/env bash
# The container images of the end-to-end test, built offline with buildah.
#
#   images.sh build         build what changed; print "<ref> <oci-archive>" per image
#   images.sh load SOCKET   build, then import every archive into the containerd
#                           at SOCKET (namespace k8s.io, unpacked for CRI)
#   images.sh list          print "<ref> <oci-archive>" of what is built, without building
#                           (exit 3 when some image is not built)
#
# Images (refs as containerd's CRI sees them):
#   localhost/mpijob-e2e/pause:3.2      Kubernetes' pause.c, static, on scratch
#   docker.io/mpijob/agent:0.1.0        Dockerfile.agent       (scripts/build-static.sh agent)
#   docker.io/mpijob/controller:0.1.0   Dockerfile.controller  (scripts/build-static.sh controller)
#   docker.io/mpijob/openmpi:latest     images/openmpi/Dockerfile
#   docker.io/mpijob/mpich:latest       images/mpich/Dockerfile
# The MPI images are built FROM a Debian bookworm minbase made by
# debootstrap (localhost/mpijob-e2e/debian:bookworm-minbase), passed as
# --build-arg BASE, so nothing is pulled from a registry; apt inside the
# build reaches the Debian mirror through the host network.
#
# Each archive's name holds a hash of the image's inputs (Dockerfile, the
# files its COPY lines read, build args, and for the MPI images the sha256
# of the base's rootfs tarball), so an unchanged image is not rebuilt. The
# base tarball is made once; delete $MPIJOB_CACHE/images/base to refresh it.
#
# Environment:
#   MPIJOB_CACHE            cache root (default /var/cache/mpijob); images in $MPIJOB_CACHE/images
#   MPIJOB_DEBIAN_MIRROR    Debian mirror for debootstrap (default: from the host's apt sources)
#   MPIJOB_E2E_SNAPSHOTTER  containerd snapshotter to unpack into on `load` (default overlayfs)
set -euo pipefail

# ---------------------------------------------------------------- settings --

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO
readonly CACHE_ROOT="${MPIJOB_CACHE:-/var/cache/mpijob}"
readonly IMG_DIR="${CACHE_ROOT}/images"
# buildah's private storage: vfs needs no overlay mounts and no fuse.
readonly BH_ROOT="${IMG_DIR}/buildah/root"
readonly BH_RUNROOT="${IMG_DIR}/buildah/runroot"
readonly STAGE_DIR="${IMG_DIR}/context"
readonly BASE_TAR="${IMG_DIR}/base/debian-bookworm-minbase.tar"
readonly BASE_REF="localhost/mpijob-e2e/debian:bookworm-minbase"
# The base image carries the sha256 of the rootfs tarball it came from.
readonly BASE_LABEL="dev.mpijob.e2e.rootfs-sha256"
readonly SUITE=bookworm
readonly SNAPSHOTTER="${MPIJOB_E2E_SNAPSHOTTER:-overlayfs}"

# Part of every image's input hash: bump it when the way images are built
# changes (flags below), so that every archive is rebuilt once.
readonly RECIPE=1

# Kubernetes source tree prepared by tests/cluster/cluster.sh (pause.c).
readonly K8S_SRC="${CACHE_ROOT}/kubernetes-1.20.5+really1.20.2/src/kubernetes-1.20.5+really1.20.2"
readonly PAUSE_SRC="${K8S_SRC}/build/pause/linux/pause.c"

VERSION="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "${REPO}/Cargo.toml")"
readonly VERSION

# name  ref  (in build order)
readonly IMAGES=(
  "pause localhost/mpijob-e2e/pause:3.2"
  "agent docker.io/mpijob/agent:${VERSION}"
  "controller docker.io/mpijob/controller:${VERSION}"
  "openmpi docker.io/mpijob/openmpi:latest"
  "mpich docker.io/mpijob/mpich:latest"
)

readonly BUILD_PACKAGES=(buildah debootstrap gcc libc6-dev file)

# ----------------------------------------------------------------- helpers --

log() { printf '[images.sh] %s\n' "$*" >&2; }
die() { printf '[images.sh] ERROR: %s\n' "$*" >&2; exit 1; }

now() { date +%s; }

# ensure_packages PKG... : apt-get install the packages that are not installed.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "${p}" 2>/dev/null || true)" != installed ]]; then
      missing+=("${p}")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  [[ ${EUID} -eq 0 ]] || die "missing Debian packages (run as root, or install them): ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}

# fd 8 guards the image cache, so concurrent callers wait instead of colliding.
take_lock() {
  mkdir -p "${IMG_DIR}"
  exec 8>"${IMG_DIR}/.lock"
  flock -n 8 || { log "waiting for another images.sh (lock ${IMG_DIR}/.lock)"; flock 8; }
}

bh() {
  buildah --root "${BH_ROOT}" --runroot "${BH_RUNROOT}" --storage-driver vfs "$@"
}

sha256() { sha256sum "$1" | cut -c1-64; }

# archive_of NAME : the archive currently built for NAME, if any.
archive_of() {
  local f newest=""
  for f in "${IMG_DIR}/${1}"-*.oci.tar; do
    [[ -f "${f}" ]] || continue
    [[ -z "${newest}" || "${f}" -nt "${newest}" ]] && newest="${f}"
  done
  [[ -n "${newest}" ]] && printf '%s' "${newest}"
}

# debian_mirror: the Debian archive the host's apt uses.
debian_mirror() {
  if [[ -n "${MPIJOB_DEBIAN_MIRROR:-}" ]]; then
    printf '%s' "${MPIJOB_DEBIAN_MIRROR}"
    return 0
  fi
  local m=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    # The URIs of the first deb stanza whose Suites include the plain suite.
    m="$(awk -v suite="${SUITE}" '
      /^[[:space:]]*$/ { if (deb && has && uri != "") { print uri; exit } deb = has = 0; uri = ""; next }
      /^Types:/  { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      /^URIs:/   { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
      END { if (deb && has && uri != "") print uri }
    ' /etc/apt/sources.list.d/debian.sources | head -n 1)"
  fi
  if [[ -z "${m}" && -f /etc/apt/sources.list ]]; then
    m="$(awk -v suite="${SUITE}" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)"
  fi
  printf '%s' "${m:-http://deb.debian.org/debian}"
}

# ------------------------------------------------------------------- base ---

# ensure_base_tar: debootstrap a minbase bookworm rootfs once, into a tarball.
ensure_base_tar() {
  if [[ -f "${BASE_TAR}" && -f "${BASE_TAR}.sha256" ]]; then
    return 0
  fi
  local mirror rootfs t0
  mirror="$(debian_mirror)"
  rootfs="${IMG_DIR}/base/rootfs.tmp"
  t0="$(now)"
  log "base: debootstrap --variant=minbase ${SUITE} from ${mirror} (log ${IMG_DIR}/base/debootstrap.log)"
  rm -rf "${rootfs}"
  mkdir -p "${rootfs}"
  if ! debootstrap --variant=minbase "${SUITE}" "${rootfs}" "${mirror}" >"${IMG_DIR}/base/debootstrap.log" 2>&1; then
    tail -n 20 "${IMG_DIR}/base/debootstrap.log" >&2
    die "debootstrap failed (log ${IMG_DIR}/base/debootstrap.log)"
  fi

  # apt sources: the host's deb822 file when there is one (same mirror, plus
  # bookworm-updates and bookworm-security, as in debian:bookworm-slim).
  if [[ -f /etc/apt/sources.list.d/debian.sources && -z "${MPIJOB_DEBIAN_MIRROR:-}" ]]; then
    install -m 0644 /etc/apt/sources.list.d/debian.sources "${rootfs}/etc/apt/sources.list.d/debian.sources"
    rm -f "${rootfs}/etc/apt/sources.list"
  fi
  # Like the slim Debian images: no docs, man pages or translations, now or
  # in any later apt-get install.
  cat >"${rootfs}/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# As in debian:bookworm-slim: files that containers do not need.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  # Also as there: apt drops downloaded packages and fetches no translations.
  cat >"${rootfs}/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'Acquire::Languages "none";\n' >"${rootfs}/etc/apt/apt.conf.d/docker-no-languages"
  find "${rootfs}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "${rootfs}/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${rootfs:?}"/usr/share/{groff,info,linda,locale,man}/* "${rootfs:?}"/usr/share/lintian/overrides/*
  # Package caches and lists, and what the container runtime provides.
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/cache/apt/*.bin \
    "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/log/bootstrap.log \
    "${rootfs:?}"/dev/* "${rootfs:?}"/proc/* "${rootfs:?}"/sys/* "${rootfs:?}"/run/* "${rootfs:?}"/tmp/*
  rm -f "${rootfs}/etc/resolv.conf" "${rootfs}/etc/hostname"
  : >"${rootfs}/etc/hostname"
  mkdir -p "${rootfs}/var/lib/apt/lists/partial"

  tar --numeric-owner --xattrs --sort=name -C "${rootfs}" -cf "${BASE_TAR}.tmp" .
  rm -rf "${rootfs}"
  sha256 "${BASE_TAR}.tmp" >"${BASE_TAR}.sha256.tmp"
  mv -f "${BASE_TAR}.tmp" "${BASE_TAR}"
  mv -f "${BASE_TAR}.sha256.tmp" "${BASE_TAR}.sha256"
  log "base: rootfs tarball ${BASE_TAR} ($(du -h "${BASE_TAR}" | cut -f1)) in $(($(now) - t0)) s"
}

base_key() { cat "${BASE_TAR}.sha256"; }

# ensure_base_image: the tarball committed into buildah's storage as BASE_REF.
ensure_base_image() {
  local want have ctr mnt t0
  want="$(base_key)"
  have="$(bh inspect --type image --format "{{index .OCIv1.Config.Labels \"${BASE_LABEL}\"}}" "${BASE_REF}" 2>/dev/null || true)"
  [[ "${have}" == "${want}" ]] && return 0
  t0="$(now)"
  log "base: committing ${BASE_TAR##*/} as ${BASE_REF}"
  ctr="$(bh from --pull=never scratch)"
  mnt="$(bh mount "${ctr}")"
  tar --numeric-owner --xattrs -xpf "${BASE_TAR}" -C "${mnt}"
  bh umount "${ctr}" >/dev/null
  bh config --os linux --arch amd64 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["bash"]' \
    --label "${BASE_LABEL}=${want}" \
    --label "org.opencontainers.image.description=Debian ${SUITE} minbase (debootstrap) for the mpijob e2e images" \
    "${ctr}"
  bh commit --quiet --rm "${ctr}" "${BASE_REF}" >/dev/null
  log "base: ${BASE_REF} committed in $(($(now) - t0)) s"
}

# --------------------------------------------------------------- contexts ---

# stage_binary NAME : build the static binary, copy it into its own context.
stage_binary() {
  local name=$1 bin dir
  bin="$("${REPO}/scripts/build-static.sh" "${name}")" || die "scripts/build-static.sh ${name} failed"
  dir="${STAGE_DIR}/${name}"
  mkdir -p "${dir}"
  if ! cmp -s "${bin}" "${dir}/mpijob-${name}"; then
    cp -f "${bin}" "${dir}/.mpijob-${name}.tmp"
    mv -f "${dir}/.mpijob-${name}.tmp" "${dir}/mpijob-${name}"
  fi
}

# stage_pause : compile Kubernetes' pause.c statically into its context.
stage_pause() {
  if [[ ! -f "${PAUSE_SRC}" ]]; then
    log "pause: ${PAUSE_SRC} missing; preparing the Kubernetes source (tests/cluster/cluster.sh build)"
    "${REPO}/tests/cluster/cluster.sh" build >&2
    [[ -f "${PAUSE_SRC}" ]] || die "tests/cluster/cluster.sh build did not prepare ${PAUSE_SRC}"
  fi
  local tag dir
  # The version pause.c reports is the tree's own pause TAG (the Makefile's).
  tag="$(sed -n 's/^TAG *= *//p' "${PAUSE_SRC%/linux/pause.c}/Makefile" | head -n 1)"
  dir="${STAGE_DIR}/pause"
  mkdir -p "${dir}"
  gcc -Os -Wall -Werror -static -DVERSION="v${tag:-unknown}-mpijob" -o "${dir}/.pause.tmp" "${PAUSE_SRC}"
  strip "${dir}/.pause.tmp"
  if cmp -s "${dir}/.pause.tmp" "${dir}/pause"; then
    rm -f "${dir}/.pause.tmp"
  else
    mv -f "${dir}/.pause.tmp" "${dir}/pause"
  fi
}

# -------------------------------------------------------------------- build --

# file_sums FILE... : "sha256  path" lines, paths relative to the repo or cache.
file_sums() {
  local f rel
  for f in "$@"; do
    rel="${f#"${REPO}/"}"
    rel="${rel#"${STAGE_DIR}/"}"
    printf '%s  %s\n' "$(sha256 "${f}")" "${rel}"
  done
}

# image_plan NAME : set DOCKERFILE, CONTEXT, INPUTS (files), NEEDS_BASE.
# INPUTS must name every file the Dockerfile COPYs: they make the hash.
image_plan() {
  NEEDS_BASE=0
  case "$1" in
    pause)
      DOCKERFILE="${REPO}/tests/e2e/pause/Dockerfile"
      CONTEXT="${STAGE_DIR}/pause"
      INPUTS=("${DOCKERFILE}" "${CONTEXT}/pause")
      ;;
    agent | controller)
      DOCKERFILE="${REPO}/Dockerfile.$1"
      CONTEXT="${STAGE_DIR}/$1"
      INPUTS=("${DOCKERFILE}" "${CONTEXT}/mpijob-$1")
      ;;
    openmpi | mpich)
      DOCKERFILE="${REPO}/images/$1/Dockerfile"
      CONTEXT="${REPO}"
      INPUTS=("${DOCKERFILE}" "${REPO}/examples/pi/pi.c")
      NEEDS_BASE=1
      ;;
    *) die "unknown image $1" ;;
  esac
}

# build_one NAME REF : build the image unless its archive is current; print
# "<ref> <archive>".
build_one() {
  local name=$1 ref=$2 t0 key archive tmp args=()
  t0="$(now)"
  case "${name}" in
    pause) stage_pause ;;
    agent | controller) stage_binary "${name}" ;;
  esac
  image_plan "${name}"
  case "${name}" in
    agent | controller) args+=(--build-arg "VERSION=${VERSION}") ;;
  esac
  ((NEEDS_BASE)) && args+=(--build-arg "BASE=${BASE_REF}")
  key="$(
    printf 'recipe %s\nref %s\nargs %s\n' "${RECIPE}" "${ref}" "${args[*]}"
    ((NEEDS_BASE)) && printf 'base %s\n' "$(base_key)"
    file_sums "${INPUTS[@]}"
  )"
  key="$(sha256sum <<<"${key}" | cut -c1-16)"
  archive="${IMG_DIR}/${name}-${key}.oci.tar"
  if [[ -f "${archive}" ]]; then
    log "${ref}: cached (${archive##*/}, $(du -h "${archive}" | cut -f1)), $(($(now) - t0)) s"
    printf '%s %s\n' "${ref}" "${archive}"
    return 0
  fi

  ((NEEDS_BASE)) && ensure_base_image
  log "${ref}: building from ${DOCKERFILE#"${REPO}/"} (log ${IMG_DIR}/${name}.log)"
  # chroot isolation and the host network: no OCI runtime, no CNI, and apt
  # reaches the mirror; --pull=never: every FROM is local or scratch.
  if ! bh build --isolation chroot --network host --pull=never \
    --format oci --layers=false --rm --force-rm \
    "${args[@]}" -f "${DOCKERFILE}" -t "${ref}" "${CONTEXT}" >"${IMG_DIR}/${name}.log" 2>&1; then
    tail -n 30 "${IMG_DIR}/${name}.log" >&2
    die "${ref}: buildah build failed (log ${IMG_DIR}/${name}.log)"
  fi
  tmp="${IMG_DIR}/.${name}-${key}.oci.tar.tmp"
  rm -f "${tmp}"
  bh push --quiet "${ref}" "oci-archive:${tmp}:${ref}" >&2 || die "${ref}: buildah push to ${tmp} failed"
  mv -f "${tmp}" "${archive}"
  # Older archives of this image are stale now; the image itself lives on in
  # the archive, so buildah's copy (a full tree per layer with vfs) goes.
  local old
  for old in "${IMG_DIR}/${name}"-*.oci.tar; do
    [[ "${old}" == "${archive}" ]] || rm -f "${old}"
  done
  bh rmi "${ref}" >/dev/null 2>&1 || true
  log "${ref}: built (${archive##*/}, $(du -h "${archive}" | cut -f1)) in $(($(now) - t0)) s"
  printf '%s %s\n' "${ref}" "${archive}"
}

cmd_build() {
  ensure_packages "${BUILD_PACKAGES[@]}"
  take_lock
  mkdir -p "${IMG_DIR}/base" "${STAGE_DIR}"
  local t0 entry
  t0="$(now)"
  ensure_base_tar
  for entry in "${IMAGES[@]}"; do
    # shellcheck disable=SC2086 # "name ref"
    build_one ${entry}
  done
  # Leftovers of failed builds (containers, untagged intermediate images).
  bh rm --all >/dev/null 2>&1 || true
  bh rmi --prune >/dev/null 2>&1 || true
  log "all images ready in $(($(now) - t0)) s (archives in ${IMG_DIR})"
}

cmd_list() {
  local entry name ref archive absent=0
  for entry in "${IMAGES[@]}"; do
    read -r name ref <<<"${entry}"
    if archive="$(archive_of "${name}")"; then
      printf '%s %s\n' "${ref}" "${archive}"
    else
      log "${ref}: not built (run \`$0 build\`)"
      absent=1
    fi
  done
  ((absent == 0)) || return 3
}

cmd_load() {
  local sock=${1:-}
  [[ -n "${sock}" ]] || die "usage: $0 load <containerd-socket>"
  [[ -S "${sock}" ]] || die "${sock} is not a socket (is containerd running?)"
  command -v ctr >/dev/null || ensure_packages containerd
  local lines t0 ref archive
  lines="$(cmd_build)"
  t0="$(now)"
  while read -r ref archive; do
    [[ -n "${ref}" ]] || continue
    # The archive's index names the image with its full ref
    # (org.opencontainers.image.ref.name), which ctr keeps as the image
    # name: exactly the normalized ref CRI looks up. Unpacking (the
    # default) into the snapshotter CRI uses is what lets a pod start from
    # it; ctr skips layers that are already there.
    log "${ref}: importing ${archive##*/} into ${sock} (namespace k8s.io, snapshotter ${SNAPSHOTTER})"
    ctr --address "${sock}" --namespace k8s.io images import \
      --snapshotter "${SNAPSHOTTER}" "${archive}" >&2 ||
      die "${ref}: ctr images import failed"
    ctr --address "${sock}" --namespace k8s.io images ls --quiet name=="${ref}" | grep -qxF "${ref}" ||
      die "${ref}: not listed by containerd after the import"
  done <<<"${lines}"
  log "loaded $(wc -l <<<"${lines}") images into ${sock} in $(($(now) - t0)) s"
  printf '%s\n' "${lines}"
}

usage() {
  sed -n '2,29s/^# \{0,1\}//p' "$0" >&2
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "${cmd}" in
    build) cmd_build ;;
    load) cmd_load "$@" ;;
    list) cmd_list ;;
    -h | --help | help) usage ;;
    *)
      usage
      exit 2
      ;;
  esac
}

main "$@"
