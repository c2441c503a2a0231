import dns from 'node:dns';
import net from 'node:net';

/**
 * Where a service may live: this machine or the local network. The agent reaches nothing else,
 * so a relay (or a typo) can never turn the Pi into a door to the internet or a public host.
 */

const LAN_SUFFIXES = ['.local', '.lan', '.home.arpa', '.internal', '.localhost'];

function v4ToInt(ip: string): number {
  let n = 0;
  for (const part of ip.split('.')) n = n * 256 + Number(part);
  return n >>> 0;
}

const V4_RANGES: ReadonlyArray<readonly [number, number]> = [
  ['127.0.0.0', 8], // loopback
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['169.254.0.0', 16], // link-local
  ['100.64.0.0', 10], // carrier-grade NAT, also Tailscale and similar overlays
].map(([base, bits]) => [v4ToInt(base as string), bits as number] as const);

function isLanV4(ip: string): boolean {
  const n = v4ToInt(ip);
  return V4_RANGES.some(([base, bits]) => n >>> (32 - bits) === base >>> (32 - bits));
}

function isLanV6(ip: string): boolean {
  const a = ip.toLowerCase();
  if (a === '::1') return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped !== null) return isLanV4(mapped[1]!);
  const first = parseInt(a.split(':')[0] || '0', 16);
  return (first & 0xfe00) === 0xfc00 /* fc00::/7 unique local */ || (first & 0xffc0) === 0xfe80; /* fe80::/10 */
}

/** True for an IP literal on loopback or a private / link-local network. */
export function isLanAddress(ip: string): boolean {
  const kind = net.isIP(ip);
  if (kind === 4) return isLanV4(ip);
  if (kind === 6) return isLanV6(ip);
  return false;
}

/** True for a host name that names this machine or the LAN: `localhost`, a single label
 * (`octopi`), or one under a local-only suffix (`octopi.local`, `printer.lan`, `*.home.arpa`). */
export function isLanHostname(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost') return true;
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/.test(h)) return false;
  if (!h.includes('.')) return true;
  return LAN_SUFFIXES.some((s) => h.endsWith(s));
}

/** True for an IP literal or host name the agent may connect to. */
export function isLanHost(host: string): boolean {
  return net.isIP(host) !== 0 ? isLanAddress(host) : isLanHostname(host);
}

/**
 * A `lookup` for net.connect that resolves normally, then keeps only LAN addresses: a local
 * name that resolves to a public address (a hijacked search domain, a wrong /etc/hosts) fails.
 */
export const lanOnlyLookup: net.LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err !== null) {
      callback(err, options.all === true ? [] : '');
      return;
    }
    const ok = addresses.filter((a) => isLanAddress(a.address));
    const first = ok[0];
    if (first === undefined) {
      const e: NodeJS.ErrnoException = new Error(`${hostname} does not resolve to a local-network address`);
      e.code = 'ENOTLAN';
      callback(e, options.all === true ? [] : '');
      return;
    }
    if (options.all === true) callback(null, ok);
    else callback(null, first.address, first.family);
  });
};
