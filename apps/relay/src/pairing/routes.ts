import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { NAME_MAX } from '../devices.js';
import { RelayError } from '../errors.js';
import { LogField } from '../log.js';
import type { PairingService, PollResult } from './service.js';

/** The agent-facing pairing endpoints; unauthenticated, so small and strict. */
export const PAIR_START_PATH = '/_porthole/pair/start';
export const PAIR_POLL_PATH = '/_porthole/pair/poll';

/** Largest JSON body either endpoint reads. */
export const PAIR_BODY_LIMIT = 2 * 1024;

export interface PairingRoutesOptions {
  pairing: PairingService;
}

interface StartBody {
  name: string;
  agent: string;
}

interface PollBody {
  pairingId: string;
  pollToken: string;
}

const startSchema = {
  body: {
    type: 'object',
    required: ['name', 'agent'],
    additionalProperties: false,
    properties: {
      name: { type: 'string', minLength: 1, maxLength: NAME_MAX },
      agent: { type: 'string', minLength: 1, maxLength: 64 },
    },
  },
} as const;

const pollSchema = {
  body: {
    type: 'object',
    required: ['pairingId', 'pollToken'],
    additionalProperties: false,
    properties: {
      pairingId: { type: 'string', pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' },
      pollToken: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' },
    },
  },
} as const;

/** HTTP status of each poll answer. */
const POLL_STATUS: Record<PollResult['status'], number> = {
  pending: 200,
  approved: 200,
  expired: 410,
  denied: 403,
  unknown: 404,
};

/** Seconds an agent refused for too many pairings should wait. */
const LIMIT_RETRY_AFTER_S = 60;

/**
 * `POST /_porthole/pair/start` and `POST /_porthole/pair/poll`, as an encapsulated plugin (its
 * error handler answers only these routes): register with `app.register(pairingRoutes, { pairing })`.
 * Errors are JSON `{ code, message }`; poll answers are `{ status, … }` as the agent expects.
 */
export async function pairingRoutes(app: FastifyInstance, opts: PairingRoutesOptions): Promise<void> {
  const { pairing } = opts;

  app.setErrorHandler((err: FastifyError, request, reply) => {
    noStore(reply);
    if (err instanceof RelayError) {
      if (err.code === 'RELAY_PAIRING_LIMIT') reply.header('retry-after', String(LIMIT_RETRY_AFTER_S));
      return reply.code(err.statusCode).send({ code: err.code, message: err.message });
    }
    if (err.validation !== undefined) {
      return reply.code(400).send({ code: 'RELAY_BAD_REQUEST', message: `Bad request: ${err.message}` });
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      // Fastify's own: 413 body too large, 415 not JSON, 400 malformed JSON.
      return reply.code(status).send({ code: err.code ?? 'RELAY_BAD_REQUEST', message: err.message });
    }
    request.log.error({ [LogField.err]: err }, 'pairing request failed');
    return reply.code(500).send({ code: 'RELAY_INTERNAL', message: 'Internal error' });
  });

  app.post<{ Body: StartBody }>(PAIR_START_PATH, { bodyLimit: PAIR_BODY_LIMIT, schema: startSchema }, async (request, reply) => {
    const r = pairing.start({ name: request.body.name, agent: request.body.agent, remote: request.ip });
    noStore(reply);
    return reply.code(201).send({
      pairingId: r.pairingId,
      code: r.code,
      pollToken: r.pollToken,
      expiresAt: r.expiresAt.toISOString(),
      approveUrl: r.approveUrl,
    });
  });

  app.post<{ Body: PollBody }>(PAIR_POLL_PATH, { bodyLimit: PAIR_BODY_LIMIT, schema: pollSchema }, async (request, reply) => {
    // The client gave up (or its connection broke): stop waiting, so a credential is never
    // handed to a connection nobody reads.
    const gone = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) gone.abort();
    };
    reply.raw.once('close', onClose);
    try {
      const result = await pairing.poll({ pairingId: request.body.pairingId, pollToken: request.body.pollToken, signal: gone.signal });
      noStore(reply);
      const body =
        result.status === 'unknown'
          ? { status: 'unknown', message: 'No such pairing: the relay may have restarted; start pairing again' }
          : result;
      return reply.code(POLL_STATUS[result.status]).send(body);
    } finally {
      reply.raw.off('close', onClose);
    }
  });
}

function noStore(reply: FastifyReply): void {
  reply.header('cache-control', 'no-store');
}
