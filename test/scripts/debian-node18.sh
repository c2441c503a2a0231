#!/bin/sh
# Debian's own Node 18 — what Raspberry Pi OS bookworm runs the agent with — for the tests, beside
# the machine's Node 20. Prints the path of a `node` to run.
#
# When /usr/bin/node already is Node 18 (a Pi, a plain bookworm), that is the answer. Otherwise
# `apt-get install nodejs` cannot help (it would replace the machine's Node 20, and Debian's
# node-* packages refuse a non-Debian nodejs), so Debian's packages are downloaded with
# `apt-get download` and unpacked into $PORTHOLE_NODE18_ROOT (default /opt/porthole-node18)
# without installing anything. Debian's libnode loads a few built-in modules from
# /usr/share/nodejs; the wrapper written there runs node in a private mount namespace with the
# unpacked /usr/share laid over the machine's, for that process only. Needs root (as CI is).
set -eu

if [ -x /usr/bin/node ] && /usr/bin/node -e 'process.exit(process.version.startsWith("v18.") ? 0 : 1)' 2>/dev/null; then
  echo /usr/bin/node
  exit 0
fi

ROOT=${PORTHOLE_NODE18_ROOT:-/opt/porthole-node18}
WRAPPER="$ROOT/node"
if [ -x "$WRAPPER" ] && "$WRAPPER" -e 'process.exit(process.version.startsWith("v18.") ? 0 : 1)' 2>/dev/null; then
  echo "$WRAPPER"
  exit 0
fi

version=$(apt-cache madison nodejs | awk '$3 ~ /^18\./ { print $3; exit }')
if [ -z "$version" ]; then
  echo "debian-node18: apt knows no nodejs 18.x (run apt-get update; this wants Debian bookworm's lists)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  # The runtime libraries too, so nothing depends on what happens to be installed.
  apt-get download -q "nodejs=$version" "libnode108=$version" libc-ares2 libuv1 libnghttp2-14 libbrotli1 libicu72 \
    node-acorn node-cjs-module-lexer node-undici >&2
) 2>&1 | grep -v 'Download is performed unsandboxed' >&2 || true
for deb in "$work"/*.deb; do
  [ -e "$deb" ] || { echo "debian-node18: apt-get download fetched nothing" >&2; exit 1; }
done

rm -rf "$ROOT.new"
mkdir -p "$ROOT.new"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$ROOT.new"; done
libnode=$(find "$ROOT.new/usr/lib" -name libnode.so.108 | head -n 1)
libdir=${libnode%/*}
libdir=${libdir#"$ROOT.new"}

cat > "$ROOT.new/node" <<WRAP
#!/bin/sh
# Debian's node $version unpacked in $ROOT (made by test/scripts/debian-node18.sh).
exec unshare -m --propagation private sh -c '
  mount -t overlay porthole-node18 -o "lowerdir=\$1/usr/share:/usr/share" /usr/share || exit 70
  root=\$1; shift
  LD_LIBRARY_PATH="\$root$libdir" exec "\$root/usr/bin/node" "\$@"
' sh "$ROOT" "\$@"
WRAP
chmod 755 "$ROOT.new/node"
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"

if ! "$WRAPPER" -e 'process.exit(process.version.startsWith("v18.") ? 0 : 1)'; then
  echo "debian-node18: the unpacked node in $ROOT does not run (see above)" >&2
  exit 1
fi
echo "$WRAPPER"
