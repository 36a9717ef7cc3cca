#!/usr/bin/env bash
# Build the Perf Sentinel container image from ./Dockerfile, and optionally push it.
#
#   scripts/build-image.sh                       # perfsentinel:<version>: what the Helm chart runs by default
#   scripts/build-image.sh --tag registry.example.org/team/perfsentinel:0.1.0 --push
#
# With a Docker daemon that answers, this is `docker build` (and `docker push`). Without one it uses buildah
# (apt-get install buildah debootstrap; run as root) and, because the Dockerfile's python:3.11-slim-<suite> base
# may not be pullable, builds from a stand-in made with Debian's own tools: `debootstrap --variant=minbase
# <suite>` (the Debian release in the Dockerfile's base tag) with python3, python3-venv, python-is-python3 and
# ca-certificates, upgraded from <suite>-updates and -security, documentation and locales removed as in Debian's
# slim images.
# That base is cached: in buildah's storage as localhost/perfsentinel-base:<suite>-<key> and as a tarball under the
# cache directory (<key> hashes the recipe and the mirrors), with debootstrap's downloaded packages.
#
# Options:
#   --tag NAME            image name (default perfsentinel:<version in pyproject.toml>)
#   --push                push NAME after building (docker push / buildah push docker://NAME)
#   --builder B           auto (default: docker if its daemon answers, else buildah), docker or buildah
#   --base IMAGE          build FROM this image (buildah: instead of the debootstrapped stand-in, e.g.
#                         docker.io/library/python:3.11-slim-bookworm when the registry is reachable)
#   --refresh-base        buildah: make the debootstrapped base again (e.g. for newer security updates)
#   --mirror URL          Debian mirror for the base (default: the first .../debian of /etc/apt/sources.list*,
#                         else http://deb.debian.org/debian); --security-mirror URL likewise for .../debian-security
#   --ca-bundle FILE      buildah: mounted read-only at /etc/ssl/certs/ca-certificates.crt in every RUN step, so
#                         pip trusts a TLS-inspecting proxy (default: this host's bundle, when it exists; none: no
#                         mount)
#   --cache-dir DIR       default ${PERFSENTINEL_IMAGE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/perfsentinel-image}
#   --storage-driver D    buildah storage driver: auto (default: the driver of images already stored, else overlay
#                         where the kernel can mount it there, else vfs), overlay or vfs (works everywhere, but
#                         copies the whole tree for every layer: a build takes minutes instead of about one)
#   --no-layer-cache      buildah: do not reuse cached layers of earlier builds
#   --print-tag           print the image name this would build and exit
#   -h, --help            this text
# Prints the built image's name as the last line of standard output.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)
TAG="perfsentinel:$VERSION"
PUSH=0
BUILDER=auto
BASE=""
REFRESH_BASE=0
MIRROR=""
SECURITY_MIRROR=""
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CACHE_DIR=${PERFSENTINEL_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/perfsentinel-image}
STORAGE_DRIVER=auto
LAYERS=true
PRINT_TAG=0
GRAPH_ROOT=/var/lib/containers/storage  # buildah's storage for root
# what the stand-in base holds besides Debian's minbase; part of the cache key
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates"
BASE_RECIPE=1

CLEANUP=()  # run at exit: what a failed step would leave behind
cleanup() { local step; for step in "${CLEANUP[@]}"; do eval "$step" || true; done; }
trap cleanup EXIT
die() { echo "build-image.sh: $*" >&2; exit 2; }
log() { echo "build-image.sh: [${SECONDS}s] $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=${2:?--tag needs a name}; shift 2 ;;
    --push) PUSH=1; shift ;;
    --builder) BUILDER=${2:?--builder needs auto, docker or buildah}; shift 2 ;;
    --base) BASE=${2:?--base needs an image}; shift 2 ;;
    --refresh-base) REFRESH_BASE=1; shift ;;
    --mirror) MIRROR=${2:?--mirror needs a URL}; shift 2 ;;
    --security-mirror) SECURITY_MIRROR=${2:?--security-mirror needs a URL}; shift 2 ;;
    --ca-bundle) CA_BUNDLE=${2:?--ca-bundle needs a file}; shift 2 ;;
    --cache-dir) CACHE_DIR=${2:?--cache-dir needs a directory}; shift 2 ;;
    --storage-driver) STORAGE_DRIVER=${2:?--storage-driver needs a driver}; shift 2 ;;
    --no-layer-cache) LAYERS=false; shift ;;
    --print-tag) PRINT_TAG=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$BUILDER" in auto|docker|buildah) ;; *) die "--builder must be auto, docker or buildah, got '$BUILDER'" ;; esac
case "$STORAGE_DRIVER" in auto|overlay|vfs) ;; *) die "--storage-driver must be auto, overlay or vfs" ;; esac
if [ "$PRINT_TAG" = 1 ]; then echo "$TAG"; exit 0; fi
if [ "$BUILDER" = auto ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then BUILDER=docker; else BUILDER=buildah; fi
fi

# ---------------------------------------------------------------- docker
build_with_docker() {
  command -v docker >/dev/null || die "docker is not installed"
  log "docker build -t $TAG"
  docker build ${BASE:+--build-arg "PYTHON_IMAGE=$BASE"} -t "$TAG" "$REPO" >&2
  if [ "$PUSH" = 1 ]; then docker push "$TAG" >&2; fi
}

# ---------------------------------------------------------------- buildah
bah() { buildah --storage-driver "$STORAGE_DRIVER" "$@"; }

overlay_mounts_here() {
  local dir status
  mkdir -p "$(dirname "$GRAPH_ROOT")"
  dir=$(mktemp -d "$(dirname "$GRAPH_ROOT")/.overlay-probe.XXXXXX") || return 1
  mkdir "$dir/lower" "$dir/upper" "$dir/work" "$dir/merged"
  unshare --mount sh -c "mount -t overlay overlay -o lowerdir=$dir/lower,upperdir=$dir/upper,workdir=$dir/work \
    $dir/merged" 2>/dev/null && status=0 || status=1
  rm -rf "$dir"
  return $status
}

choose_storage_driver() {
  [ "$STORAGE_DRIVER" = auto ] || return 0
  if [ -d "$GRAPH_ROOT/overlay-images" ]; then STORAGE_DRIVER=overlay
  elif [ -d "$GRAPH_ROOT/vfs-images" ]; then STORAGE_DRIVER=vfs
  elif overlay_mounts_here; then STORAGE_DRIVER=overlay
  else STORAGE_DRIVER=vfs
  fi
  log "storage driver $STORAGE_DRIVER"
}

# The Debian release and Python version of the Dockerfile's default base, e.g. python:3.11-slim-bookworm.
dockerfile_base() {
  local image
  image=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$REPO/Dockerfile" | head -n1)
  [[ "$image" =~ ^python:([0-9]+\.[0-9]+)-slim-([a-z]+)$ ]] \
    || die "cannot derive a Debian release from the Dockerfile's base '$image'; pass --base IMAGE"
  PYTHON_VERSION=${BASH_REMATCH[1]}
  SUITE=${BASH_REMATCH[2]}
}

# The first URI of the apt sources whose path ends in /$1 (both the one-line and the deb822 format).
apt_uri() {
  local files=() file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] && files+=("$file")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk -v want="$1" '
    /^[[:space:]]*#/ { next }
    $1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break }; next }
    $1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }
  ' "${files[@]}" | sed 's:/*$::' | grep -m1 -E "/$1\$" || true
}

make_base() {
  local root=$1
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y buildah debootstrap"
  mkdir -p "$CACHE_DIR/debs"
  log "debootstrap --variant=minbase $SUITE from $MIRROR (with $BASE_PACKAGES)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" --cache-dir="$CACHE_DIR/debs" \
    "$SUITE" "$root" "$MIRROR" >&2
  # the upgrade reads only the update suites' indexes (the release's own is what debootstrap installed from)
  printf 'deb %s %s-updates main\ndeb %s %s-security main\n' "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" \
    >"$root/etc/apt/sources.list"
  log "security and point-release updates"
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  chroot "$root" apt-get -qq -o Acquire::Languages=none update >&2
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -qq -y upgrade >&2
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" \
    "$SECURITY_MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
  chroot "$root" apt-get clean
  local got
  got=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$got" = "$PYTHON_VERSION" ] \
    || die "Debian $SUITE has Python $got, the Dockerfile's base Python $PYTHON_VERSION; pass --base IMAGE"
  # what Debian's slim images leave out (their dpkg path-excludes), and what only the installer needed
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/lintian \
    "$root"/var/log/* "$root"/etc/resolv.conf "$root"/etc/hostname
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  : >"$root/etc/resolv.conf"
}

# Make (or reuse) the debootstrapped stand-in for python:X.Y-slim-<suite>; sets BASE.
ensure_base() {
  dockerfile_base
  MIRROR=${MIRROR:-$(apt_uri debian)}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_uri debian-security)}
  SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
  local key
  key=$(printf '%s\n' "$BASE_RECIPE" "$SUITE" "$PYTHON_VERSION" "$BASE_PACKAGES" "$MIRROR" "$SECURITY_MIRROR" \
    | sha256sum | cut -c1-12)
  BASE="localhost/perfsentinel-base:$SUITE-$key"
  local tarball="$CACHE_DIR/base-$SUITE-$key.tar"
  if [ "$REFRESH_BASE" = 1 ]; then
    rm -f "$tarball"
    bah rmi "$BASE" >/dev/null 2>&1 || true
  fi
  if bah inspect --type image "$BASE" >/dev/null 2>&1; then
    log "base $BASE (cached)"
    return
  fi
  mkdir -p "$CACHE_DIR"
  if [ ! -f "$tarball" ]; then
    local root
    root=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    CLEANUP+=("rm -rf --one-file-system '$root' '$tarball.part'")  # never into a mount debootstrap left
    make_base "$root"
    tar --numeric-owner --xattrs -C "$root" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf --one-file-system "$root"
  fi
  log "importing $tarball as $BASE"
  local ctr mnt
  ctr=$(bah from --quiet scratch)
  CLEANUP+=("bah rm '$ctr' >/dev/null 2>&1")
  mnt=$(bah mount "$ctr")
  tar --numeric-owner --xattrs -C "$mnt" -xf "$tarball"
  bah umount "$ctr" >/dev/null
  bah config --env LANG=C.UTF-8 --cmd '["python3"]' "$ctr"
  bah commit --quiet --rm "$ctr" "$BASE" >/dev/null
}

build_with_buildah() {
  command -v buildah >/dev/null || die "buildah is missing: apt-get install -y buildah debootstrap"
  choose_storage_driver
  [ -n "$BASE" ] || ensure_base
  local volume=()
  if [ "$CA_BUNDLE" != none ] && [ -f "$CA_BUNDLE" ]; then
    volume=(--volume "$(readlink -f "$CA_BUNDLE"):/etc/ssl/certs/ca-certificates.crt:ro")
  fi
  log "buildah bud -t $TAG (base $BASE)"
  # docker format: the OCI image format has no HEALTHCHECK
  bah bud --isolation chroot --network host --format docker --layers="$LAYERS" --force-rm \
    --build-arg PYTHON_IMAGE="$BASE" "${volume[@]}" -t "$TAG" -f "$REPO/Dockerfile" "$REPO" >&2
  if [ "$PUSH" = 1 ]; then bah push "$TAG" "docker://$TAG" >&2; fi
}

if [ "$BUILDER" = docker ]; then build_with_docker; else build_with_buildah; fi
log "built $TAG"
echo "$TAG"
