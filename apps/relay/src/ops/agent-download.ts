import { createReadStream, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

/**
 * The agent, served by the relay it will connect to, so a Pi needs nothing but this relay's
 * address: `curl -fsSLO https://RELAY/download/agent/install.sh && sudo sh install.sh --relay
 * https://RELAY` fetches the bundle and the unit from here too. Public, like the source they come
 * from; nothing in them is specific to this relay.
 */

export const AGENT_DOWNLOAD_PREFIX = '/download/agent/';

export interface AgentFile {
  path: string;
  type: string;
}

/** Where the files are in the repository (from src/ops/ and dist/ops/ alike). */
export function defaultAgentFiles(): Record<string, AgentFile> {
  const at = (p: string) => fileURLToPath(new URL(p, import.meta.url));
  return {
    'install.sh': { path: at('../../../../deploy/agent/install.sh'), type: 'text/x-shellscript; charset=utf-8' },
    'porthole-agent.service': { path: at('../../../../deploy/agent/porthole-agent.service'), type: 'text/plain; charset=utf-8' },
    'porthole-agent.cjs': { path: at('../../../agent/dist/porthole-agent.cjs'), type: 'text/javascript; charset=utf-8' },
  };
}

export async function agentDownloadRoutes(app: FastifyInstance, opts: { files?: Record<string, AgentFile> }): Promise<void> {
  const files = opts.files ?? defaultAgentFiles();
  app.get<{ Params: { name: string } }>(`${AGENT_DOWNLOAD_PREFIX}:name`, async (req, reply) => {
    const file = Object.prototype.hasOwnProperty.call(files, req.params.name) ? files[req.params.name] : undefined;
    let size: number | undefined;
    try {
      if (file !== undefined) size = statSync(file.path).size;
    } catch {
      size = undefined;
    }
    if (file === undefined || size === undefined) {
      return reply.code(404).send({ error: { code: 'RELAY_NOT_FOUND', message: `Not found: ${file === undefined ? 'no such file' : 'this relay was built without the agent (npm run build)'}` } });
    }
    return reply
      .header('content-type', file.type)
      .header('content-length', size)
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-cache')
      .send(createReadStream(file.path));
  });
}
