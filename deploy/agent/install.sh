#!/bin/sh
# Porthole agent installer for the printer's Pi (Raspberry Pi OS / Debian, Node.js >= 18).
#
#   curl -fsSLO https://relay.example/download/agent/install.sh
#   sudo sh install.sh --relay https://relay.example [-- PAIR OPTIONS]
#
# Installs the agent (one JavaScript file) to PREFIX/lib/porthole with a `porthole-agent` command
# in PREFIX/bin, creates the system user `porthole`, pairs the printer with the relay (it shows a
# code to approve) which writes /etc/porthole/agent.json (0600, owned by porthole), and installs,
# enables and starts the systemd unit. The bundle and the unit come from beside this script (a
# repository checkout) or, failing that, from the relay (/download/agent/). Running it again
# upgrades in place (from the relay it is paired with) and keeps the config.
#
#   sudo sh install.sh --uninstall [--purge]
#
# Removes it; the config and the user stay unless --purge.
#
# For packaging and tests, --root DIR (or DESTDIR) installs under DIR: DIR/usr/local/...,
# DIR/etc/porthole, DIR/etc/systemd/system. Under a root other than / no user is created and
# systemctl is not called. Run with --help for every option.
set -eu

PROG=install.sh
USER_NAME=porthole
UNIT_NAME=porthole-agent.service

usage() {
	cat <<EOF
Usage: $PROG [options] [-- pair options]
       $PROG --uninstall [--purge] [options]

Installs or upgrades the Porthole agent, pairs it with your relay, and starts its service.

Options:
  --relay URL        the relay to pair with, e.g. https://relay.example (needed until paired)
  --prefix DIR       where the program goes (default /usr/local: DIR/lib/porthole, DIR/bin)
  --root DIR         install under DIR instead of / (also: DESTDIR=DIR); implies --no-user
                     and --no-systemd
  --bundle FILE      the agent bundle (default: porthole-agent.cjs beside this script, or the
                     repository's apps/agent/dist/porthole-agent.cjs, or downloaded)
  --unit FILE        the systemd unit (default: porthole-agent.service beside this script, or
                     downloaded)
  --from URL         where to download them (default: the relay's /download/agent/, the relay
                     being --relay or the one in the config)
  --node PATH        the Node.js to run it with (default: node on PATH; needs >= 18)
  --no-user          do not create the system user $USER_NAME (nor chown to it)
  --no-systemd       do not install or start the systemd unit's service (the file is still written)
  --no-pair          do not pair (the config is left as it is)
  --pair-again       pair again even though the config has a credential (replaces it)
  --uninstall        remove the program and the unit; keep the config and the user
  --purge            with --uninstall: remove the config and the user too
  -h, --help         show this help

Options after -- go to 'porthole-agent pair' (e.g. --name mk3s, --service ui=http://127.0.0.1:5000,
--route /webcam/=webcam,strip, --ca FILE). Without --service the agent detects the printer's
software itself (OctoPrint, PrusaLink, Moonraker with Mainsail/Fluidd, webcam streamers).
EOF
}

say() { printf '%s\n' "$*"; }
die() {
	printf '%s: %s\n' "$PROG" "$*" >&2
	exit 1
}
usage_error() {
	printf '%s: %s\n\n' "$PROG" "$*" >&2
	usage >&2
	exit 64
}

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

root=${DESTDIR:-}
prefix=/usr/local
bundle=
unit=
node=
relay=
from=
mode=install
purge=0
no_user=0
no_systemd=0
no_pair=0
pair_again=0

while [ $# -gt 0 ]; do
	case $1 in
	--relay) [ $# -ge 2 ] || usage_error "$1 needs a value"; relay=$2; shift 2 ;;
	--relay=*) relay=${1#*=}; shift ;;
	--prefix) [ $# -ge 2 ] || usage_error "$1 needs a value"; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#*=}; shift ;;
	--root) [ $# -ge 2 ] || usage_error "$1 needs a value"; root=$2; shift 2 ;;
	--root=*) root=${1#*=}; shift ;;
	--bundle) [ $# -ge 2 ] || usage_error "$1 needs a value"; bundle=$2; shift 2 ;;
	--bundle=*) bundle=${1#*=}; shift ;;
	--unit) [ $# -ge 2 ] || usage_error "$1 needs a value"; unit=$2; shift 2 ;;
	--unit=*) unit=${1#*=}; shift ;;
	--node) [ $# -ge 2 ] || usage_error "$1 needs a value"; node=$2; shift 2 ;;
	--node=*) node=${1#*=}; shift ;;
	--from) [ $# -ge 2 ] || usage_error "$1 needs a value"; from=$2; shift 2 ;;
	--from=*) from=${1#*=}; shift ;;
	--no-user) no_user=1; shift ;;
	--no-systemd) no_systemd=1; shift ;;
	--no-pair) no_pair=1; shift ;;
	--pair-again) pair_again=1; shift ;;
	--uninstall) mode=uninstall; shift ;;
	--purge) purge=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) usage_error "unknown option $1" ;;
	esac
done
# What is left ("$@") goes to `porthole-agent pair`.

case $prefix in
/*) ;;
*) usage_error "--prefix must be an absolute path" ;;
esac
if [ "$purge" = 1 ] && [ "$mode" != uninstall ]; then usage_error "--purge goes with --uninstall"; fi

# A root other than /: files only, nothing done to this machine's users or services.
root=${root%/}
if [ -n "$root" ]; then
	[ -d "$root" ] || die "--root $root: no such directory"
	root=$(CDPATH='' cd -- "$root" && pwd)
	[ "$root" = / ] && root=
fi
if [ -n "$root" ]; then
	no_user=1
	no_systemd=1
elif [ "$(id -u)" != 0 ]; then
	die "run it as root (sudo sh $PROG ...), or give --root DIR to install elsewhere"
fi
# systemctl only where systemd runs this machine.
if [ "$no_systemd" = 0 ] && [ ! -d /run/systemd/system ]; then
	say "systemd is not running here: the unit file is installed but not enabled or started."
	no_systemd=1
fi

lib_dir=$prefix/lib/porthole
bin_file=$prefix/bin/porthole-agent
bundle_file=$lib_dir/porthole-agent.cjs
conf_dir=/etc/porthole
conf_file=$conf_dir/agent.json
unit_file=/etc/systemd/system/$UNIT_NAME

systemctl_quiet() { systemctl "$@" >/dev/null 2>&1 || true; }

# ---- uninstall ----------------------------------------------------------------------------
if [ "$mode" = uninstall ]; then
	if [ "$no_systemd" = 0 ]; then
		systemctl_quiet disable --now "$UNIT_NAME"
	fi
	rm -f "$root$unit_file" "$root$bin_file" "$root$bundle_file"
	rmdir "$root$lib_dir" 2>/dev/null || true
	if [ "$no_systemd" = 0 ]; then systemctl_quiet daemon-reload; fi
	say "Removed the Porthole agent ($root$bundle_file, $root$bin_file, $root$unit_file)."
	if [ "$purge" = 1 ]; then
		rm -rf "$root$conf_dir"
		if [ "$no_user" = 0 ] && id "$USER_NAME" >/dev/null 2>&1; then
			userdel "$USER_NAME" 2>/dev/null || say "Could not remove the user $USER_NAME (userdel failed); remove it by hand."
		fi
		say "Purged the config ($root$conf_dir)$([ "$no_user" = 0 ] && printf ' and the user %s' "$USER_NAME")."
		say "The device is still known to the relay: remove it there (dashboard, or porthole-relay device remove SLUG)."
	elif [ -f "$root$conf_file" ]; then
		say "Kept the config $root$conf_file (its credential still works): --uninstall --purge removes it."
	fi
	exit 0
fi

# ---- install or upgrade -------------------------------------------------------------------
if [ -z "$node" ]; then
	node=$(command -v node || command -v nodejs || true)
	[ -n "$node" ] || die "Node.js is not installed. On Raspberry Pi OS: sudo apt install nodejs"
fi
[ -x "$node" ] || die "--node $node: not an executable"
node_major=$("$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 18 ] 2>/dev/null || die "Node.js 18 or newer is needed; $node is $("$node" --version 2>/dev/null || echo 'not working')"
case $node in
/*) ;;
*) node=$(CDPATH='' cd -- "$(dirname -- "$node")" && pwd)/$(basename -- "$node") ;;
esac

# The relay's own address in the config, for an upgrade without --relay.
config_relay() {
	[ -f "$root$conf_file" ] && "$node" -e '
		const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
		if (typeof c.relay === "string") console.log(c.relay);
	' "$root$conf_file" 2>/dev/null
}

fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --proto '=https,http' -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		die "neither curl nor wget is installed: sudo apt install curl"
	fi
}

if [ -z "$bundle" ]; then
	for candidate in "$here/porthole-agent.cjs" "$here/../../apps/agent/dist/porthole-agent.cjs"; do
		if [ -f "$candidate" ]; then bundle=$candidate; break; fi
	done
fi
if [ -z "$unit" ] && [ -f "$here/$UNIT_NAME" ]; then unit=$here/$UNIT_NAME; fi
if [ -z "$bundle" ] || [ -z "$unit" ]; then
	if [ -z "$from" ]; then
		base=${relay:-$(config_relay || true)}
		[ -n "$base" ] || die "no porthole-agent.cjs beside $PROG: give --relay URL to download it from the relay (or --bundle FILE)"
		case $base in
		ws://*) base=http://${base#ws://} ;;
		wss://*) base=https://${base#wss://} ;;
		esac
		from=${base%/}/download/agent
	fi
	from=${from%/}
	download=$(mktemp -d)
	trap 'rm -rf "$download"' EXIT
	if [ -z "$bundle" ]; then
		say "Downloading the agent from $from/ ..."
		fetch "$from/porthole-agent.cjs" "$download/porthole-agent.cjs" || die "could not download $from/porthole-agent.cjs"
		bundle=$download/porthole-agent.cjs
	fi
	if [ -z "$unit" ]; then
		fetch "$from/$UNIT_NAME" "$download/$UNIT_NAME" || die "could not download $from/$UNIT_NAME"
		unit=$download/$UNIT_NAME
	fi
fi
[ -f "$bundle" ] || die "--bundle $bundle: no such file"
[ -f "$unit" ] || die "--unit $unit: no such file"

new_version=$("$node" "$bundle" --version 2>/dev/null) || die "$bundle does not run with $node"
old_version=
if [ -f "$root$bundle_file" ]; then old_version=$("$node" "$root$bundle_file" --version 2>/dev/null || echo unknown); fi

# The user the service runs as.
if [ "$no_user" = 0 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/bin/false
	useradd --system --user-group --home-dir /nonexistent --no-create-home --shell "$nologin" \
		--comment "Porthole agent" "$USER_NAME" || die "could not create the user $USER_NAME"
	say "Created the system user $USER_NAME."
fi

# The program: copied beside, then renamed over, so a running agent is never left with half a file.
mkdir -p "$root$lib_dir" "$root$prefix/bin"
cp "$bundle" "$root$bundle_file.new"
chmod 0644 "$root$bundle_file.new"
mv -f "$root$bundle_file.new" "$root$bundle_file"
cat >"$root$bin_file.new" <<EOF
#!/bin/sh
# porthole-agent $new_version, installed by deploy/agent/install.sh.
exec "$node" "$bundle_file" "\$@"
EOF
chmod 0755 "$root$bin_file.new"
mv -f "$root$bin_file.new" "$root$bin_file"

# The config directory: root's, readable by the agent's group; the config itself is the agent's.
mkdir -p "$root$conf_dir"
chmod 0750 "$root$conf_dir"
if [ "$no_user" = 0 ]; then chown "root:$USER_NAME" "$root$conf_dir"; fi

paired() {
	[ -f "$root$conf_file" ] && "$node" -e '
		const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
		process.exit(typeof c.credential === "string" && c.credential !== "" ? 0 : 1);
	' "$root$conf_file" 2>/dev/null
}

if paired && [ "$pair_again" = 0 ]; then
	say "Already paired: keeping $root$conf_file."
elif [ "$no_pair" = 1 ]; then
	say "Not pairing (--no-pair). Later: sudo porthole-agent pair --relay URL --config $conf_file"
else
	[ -n "$relay" ] || die "to pair, give the relay: $PROG --relay https://relay.example (or --no-pair)"
	force=
	if [ "$pair_again" = 1 ]; then force=--force; fi
	say "Pairing with $relay ..."
	# shellcheck disable=SC2086 # $force is empty or one word
	"$node" "$root$bundle_file" pair --relay "$relay" --config "$root$conf_file" $force "$@" ||
		die "pairing did not complete; run $PROG again to retry"
fi
if [ -f "$root$conf_file" ]; then
	chmod 0600 "$root$conf_file"
	if [ "$no_user" = 0 ]; then chown "$USER_NAME:$USER_NAME" "$root$conf_file"; fi
fi

# The service.
mkdir -p "$root/etc/systemd/system"
sed "s|/usr/local/bin/porthole-agent|$bin_file|g" "$unit" >"$root$unit_file.new"
chmod 0644 "$root$unit_file.new"
mv -f "$root$unit_file.new" "$root$unit_file"

if [ "$no_systemd" = 0 ]; then
	systemctl daemon-reload
	systemctl enable "$UNIT_NAME" >/dev/null 2>&1
	if paired; then
		systemctl restart "$UNIT_NAME"
		say "Started $UNIT_NAME (see: systemctl status porthole-agent; journalctl -u porthole-agent)."
	else
		say "Enabled $UNIT_NAME; it starts once paired: sudo systemctl restart porthole-agent"
	fi
fi

if [ -n "$old_version" ]; then
	say "Upgraded the Porthole agent $old_version -> $new_version in $root$lib_dir."
else
	say "Installed the Porthole agent $new_version in $root$lib_dir."
fi
say "Check it any time: porthole-agent doctor"
