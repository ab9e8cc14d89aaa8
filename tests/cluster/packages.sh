# shellcheck shell=bash
# ensure_packages PKG... : apt-get install the Debian packages that are not
# installed (as root; otherwise say which are missing and stop). Sourced by
# cluster.sh and tests/e2e/images.sh; uses the caller's log and die.
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
