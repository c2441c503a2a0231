// Signing in as a person would, for tests, the demo and the benches: an account made with the
// relay's CLI, a real login, and the one-time handoff to the device's subdomain.
import { Client } from './client.js';
import { relayCommand, type RelayProcess } from './procs.js';

export interface SignedIn {
  client: Client;
  /** `name=value` of the device cookie, for requests made without the client. */
  cookie: string;
}

/** Creates `username` (if `create`), logs in on the relay and opens `slug`; returns the device cookie. */
export async function signInToDevice(
  relay: Pick<RelayProcess, 'env' | 'port'> & { cli?: string },
  opts: { username: string; password: string; slug: string; create?: boolean; admin?: boolean },
): Promise<SignedIn> {
  if (opts.create === true) {
    await relayCommand(relay, ['user', 'add', '--username', opts.username, '--password-stdin', ...(opts.admin ? ['--admin'] : [])], 30_000, opts.password);
  }
  const base = `http://localhost:${relay.port}`;
  const client = new Client(relay.port);
  const login = await client.request(`${base}/api/login`, {
    method: 'POST',
    json: { username: opts.username, password: opts.password },
    headers: { origin: base },
  });
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${login.text()}`);
  const opened = await client.request(`${base}/open/${opts.slug}`, { follow: 2 });
  const jar = client.cookies(`${opts.slug}.localhost`);
  const entry = [...jar].find(([k]) => k.includes('porthole_device'));
  if (entry === undefined) throw new Error(`no device cookie after opening ${opts.slug}: ${opened.status} ${opened.url}`);
  return { client, cookie: `${entry[0]}=${entry[1]}` };
}
