# Shared by quickstart.sh and test.sh: install what is missing, once.
need_root() {
  if [ "$(id -u)" != 0 ]; then echo "$0: run as root (Strata mounts, creates device nodes and sets trusted.* xattrs)" >&2; exit 1; fi
}
need_dotnet() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "$0: the .NET 10 SDK is required (https://learn.microsoft.com/dotnet/core/install/linux-debian); it is not in Debian's archive" >&2
    exit 1
  fi
}
# apt_install PKG... : installs the named Debian packages that are not installed yet (apt-get update once).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
