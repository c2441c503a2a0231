// HTTPS end to end, real processes on 127.0.0.1: Pebble issues the relay's certificate (HTTP-01
// on the relay's HTTP port, DNS-01 through pebble-challtestsrv), and the agent dials
// wss://porthole.test, reaching 127.0.0.1 through its relayAddress setting while checking the
// certificate for porthole.test against Pebble's root (its caFile).
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, startPebble, type Pebble } from './src/pebble.js';
import { addDevice, startAgent, startRelay, stopAll, type AgentProcess, type DeviceInfo, type RelayProcess } from './src/procs.js';

const DOMAIN = 'porthole.test';
let pebble: Pebble;
let relay: RelayProcess;
let device: DeviceInfo;
let httpPort: number;

function agentConfig(relayUrl: string, extra: Record<string, unknown>) {
  return {
    relay: relayUrl,
    credential: device.credential,
    services: { ui: { url: 'http://127.0.0.1:9' } },
    routes: [{ path: '/', service: 'ui' }],
    ...extra,
  };
}

/** Waits for the agent's first failed dial and checks it never connected. */
async function refused(agent: AgentProcess): Promise<string> {
  const line = await agent.waitForLog('tunnel dial failed', 15_000);
  expect(agent.findLogs('tunnel connected')).toHaveLength(0);
  return String(line.json?.reason ?? '');
}

beforeAll(async () => {
  const [port, http] = (await freePorts(2)) as [number, number];
  httpPort = http;
  pebble = await startPebble({ httpPort });
  relay = await startRelay({
    port,
    domain: DOMAIN,
    env: {
      PORTHOLE_TLS: 'acme',
      PORTHOLE_HTTP_PORT: String(httpPort),
      PORTHOLE_ACME_DIRECTORY_URL: pebble.directoryUrl,
      PORTHOLE_ACME_CA_FILE: pebble.apiCaFile,
      PORTHOLE_DNS_PROVIDER: 'challtestsrv',
      PORTHOLE_CHALLTESTSRV_URL: pebble.challtestsrvUrl,
    },
  });
  device = await addDevice(relay, { name: 'MK3S', slug: 'mk3s' });
});

afterAll(async () => {
  await stopAll();
  await pebble?.close();
});

describe('TLS end to end', () => {
  it('the relay obtained its certificate at start and serves it for the domain and device subdomains', async () => {
    expect(relay.url).toMatch(/^https:/);
    expect(relay.findLogs('certificate obtained')).toHaveLength(1);
    expect(pebble.orders()).toBe(1);
    const res = await new Promise<{ status: number; hsts: string | undefined }>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port: relay.port, path: '/', servername: `mk3s.${DOMAIN}`, headers: { host: `mk3s.${DOMAIN}:${relay.port}` }, ca: pebble.rootPem, agent: false }, (r) => {
          r.resume();
          resolve({ status: r.statusCode ?? 0, hsts: r.headers['strict-transport-security'] as string | undefined });
        })
        .once('error', reject);
    });
    expect(res.status).toBeLessThan(500);
    expect(res.hsts).toBe('max-age=31536000; includeSubDomains');
  });

  it('an agent connects over wss:// with the relay CA as its caFile, by name through relayAddress', async () => {
    const agent = await startAgent({
      config: agentConfig(`wss://${DOMAIN}:${relay.port}`, { caFile: pebble.rootFile, relayAddress: '127.0.0.1' }),
    });
    const line = agent.findLogs('tunnel connected')[0];
    expect(line?.json?.relay).toBe(`wss://${DOMAIN}:${relay.port}`);
    await agent.close();
  });

  it('an agent refuses a relay whose certificate does not verify, even with NODE_TLS_REJECT_UNAUTHORIZED=0', async () => {
    // No caFile: the system CAs do not know Pebble's root.
    const untrusting = await startAgent({
      config: agentConfig(`wss://${DOMAIN}:${relay.port}`, { relayAddress: '127.0.0.1' }),
      env: { NODE_TLS_REJECT_UNAUTHORIZED: '0' },
      waitFor: false,
    });
    expect(await refused(untrusting)).toMatch(/certificate/i);
    await untrusting.close();

    // The right CA, but the certificate is not for the name the agent dials.
    const wrongName = await startAgent({
      config: agentConfig(`wss://relay.example:${relay.port}`, { caFile: pebble.rootFile, relayAddress: '127.0.0.1' }),
      waitFor: false,
    });
    expect(await refused(wrongName)).toMatch(/altnames|does not match/i);
    await wrongName.close();
  });
});
