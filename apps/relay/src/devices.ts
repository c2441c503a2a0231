import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from './db/index.js';
import { Prisma } from './db/index.js';
import { RelayError } from './errors.js';

/** A device as the rest of the relay sees it: never its credential hash. */
export type Device = Prisma.DeviceGetPayload<{ omit: { credentialHash: true } }>;

const OMIT = { credentialHash: true } as const;

// ---- slugs -------------------------------------------------------------------------------

export const SLUG_MAX = 63;

/** Subdomains a device may not take: the relay's own names and names people trust. */
export const RESERVED_SLUGS: ReadonlySet<string> = new Set([
  'www', 'api', 'admin', 'relay', 'app', 'dashboard', 'auth', 'login', 'logout', 'signup', 'account',
  'accounts', 'static', 'assets', 'cdn', 'mail', 'smtp', 'imap', 'pop', 'ftp', 'ns', 'ns1', 'ns2', 'dns',
  'status', 'metrics', 'health', 'docs', 'help', 'support', 'porthole', 'acme', 'localhost', 'wpad',
  'autoconfig', 'autodiscover', 'root', 'system', 'internal', 'share', 'pair',
]);

/** Why `slug` is not a usable device subdomain, or null if it is. */
export function slugProblem(slug: string): string | null {
  if (slug.length === 0) return 'must not be empty';
  if (slug.length > SLUG_MAX) return `must be at most ${SLUG_MAX} characters`;
  if (!/^[a-z0-9-]+$/.test(slug)) return 'may contain only lowercase letters a-z, digits and "-"';
  if (slug.startsWith('-') || slug.endsWith('-')) return 'must not start or end with "-"';
  if (/^..--/.test(slug)) return 'must not have "--" in 3rd and 4th position (reserved for IDNA)';
  if (RESERVED_SLUGS.has(slug)) return 'is reserved';
  return null;
}

/** Throws RELAY_INVALID_SLUG unless `slug` is a valid, unreserved DNS label. */
export function assertSlug(slug: string): void {
  const problem = slugProblem(slug);
  if (problem) throw new RelayError('RELAY_INVALID_SLUG', [slug, problem]);
}

/** A slug derived from a device name: "Prusa MK3S+ (garage)" → "prusa-mk3s-garage". */
export function slugify(name: string): string {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, SLUG_MAX)
    .replace(/-+$/, '');
  return slug || 'printer';
}

export const NAME_MAX = 100;

/** Trims `name`; throws RELAY_INVALID_NAME if it is empty, too long or has control characters. */
export function normalizeName(name: string): string {
  const n = name.trim();
  if (n.length === 0) throw new RelayError('RELAY_INVALID_NAME', ['must not be empty']);
  if (n.length > NAME_MAX) throw new RelayError('RELAY_INVALID_NAME', [`must be at most ${NAME_MAX} characters`]);
  if (/\p{Cc}/u.test(n)) throw new RelayError('RELAY_INVALID_NAME', ['must not contain control characters']);
  return n;
}

// ---- credentials -------------------------------------------------------------------------

/** `pdc_<credentialId>_<secret>`: 8 random bytes as hex (a lookup handle, not secret) and 32 random bytes as base64url. */
const CREDENTIAL_RE = /^pdc_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ParsedCredential {
  readonly credentialId: string;
  readonly secret: string;
}

export function parseCredential(credential: string): ParsedCredential | null {
  const m = CREDENTIAL_RE.exec(credential);
  return m?.[1] && m[2] ? { credentialId: m[1], secret: m[2] } : null;
}

/** A fresh credential. With 256 random bits a plain SHA-256 is the right hash: nothing to brute-force. */
export function newCredential(): ParsedCredential & { readonly credential: string; readonly hash: string } {
  const credentialId = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { credentialId, secret, credential: `pdc_${credentialId}_${secret}`, hash: hashSecret(secret) };
}

/** Lowercase hex SHA-256 of the secret part. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export type AuthResult =
  | { readonly ok: true; readonly device: Device }
  | {
      readonly ok: false;
      /** malformed: not a credential at all; unknown: no such device or wrong secret; revoked: right secret, revoked device. */
      readonly reason: 'malformed' | 'unknown' | 'revoked';
    };

// ---- the store ---------------------------------------------------------------------------

export interface DeviceStoreOptions {
  /** Clock for createdAt/revokedAt defaults. */
  now?: () => Date;
}

/** Devices and their credentials. Methods that name a device by id throw RELAY_DEVICE_NOT_FOUND if it is gone. */
export class DeviceStore {
  readonly #prisma: Database['prisma'];
  readonly #now: () => Date;

  constructor(db: Pick<Database, 'prisma'>, opts: DeviceStoreOptions = {}) {
    this.#prisma = db.prisma;
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * Adds a device. Without `slug`, one is derived from the name (with -2, -3… if taken); an
   * explicit slug is validated and must be free (RELAY_SLUG_TAKEN). The credential is returned
   * only here: the database keeps its hash.
   */
  async create(input: { name: string; slug?: string }): Promise<{ device: Device; credential: string }> {
    const name = normalizeName(input.name);
    if (input.slug !== undefined) assertSlug(input.slug);
    for (let attempt = 0; ; attempt++) {
      if (input.slug !== undefined && (await this.findBySlug(input.slug))) {
        throw new RelayError('RELAY_SLUG_TAKEN', [input.slug]);
      }
      const slug = input.slug ?? (await this.#freeSlug(slugify(name)));
      const cred = newCredential();
      try {
        const device = await this.#prisma.device.create({
          data: { name, slug, credentialId: cred.credentialId, credentialHash: cred.hash, createdAt: this.#now() },
          omit: OMIT,
        });
        return { device, credential: cred.credential };
      } catch (err) {
        // Lost a race for the slug (or, once in 2^64, the credential id): derived slugs try again.
        if (!isUniqueViolation(err)) throw err;
        if (input.slug !== undefined && uniqueFields(err).includes('slug')) {
          throw new RelayError('RELAY_SLUG_TAKEN', [input.slug]);
        }
        if (attempt >= 5) throw err;
      }
    }
  }

  /** Checks a `pdc_…` credential; constant-time on the secret. */
  async authenticate(credential: string | null | undefined): Promise<AuthResult> {
    const parsed = typeof credential === 'string' ? parseCredential(credential) : null;
    if (!parsed) return { ok: false, reason: 'malformed' };
    const row = await this.#prisma.device.findUnique({ where: { credentialId: parsed.credentialId } });
    if (!row) return { ok: false, reason: 'unknown' };
    const expected = Buffer.from(row.credentialHash, 'hex');
    const actual = Buffer.from(hashSecret(parsed.secret), 'hex');
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return { ok: false, reason: 'unknown' };
    if (row.revokedAt) return { ok: false, reason: 'revoked' };
    const { credentialHash: _, ...device } = row;
    return { ok: true, device };
  }

  findBySlug(slug: string): Promise<Device | null> {
    return this.#prisma.device.findUnique({ where: { slug }, omit: OMIT });
  }

  findById(id: string): Promise<Device | null> {
    return this.#prisma.device.findUnique({ where: { id }, omit: OMIT });
  }

  /** Every device, revoked ones included, oldest first. */
  list(): Promise<Device[]> {
    return this.#prisma.device.findMany({ orderBy: [{ createdAt: 'asc' }, { slug: 'asc' }], omit: OMIT });
  }

  async rename(id: string, name: string): Promise<Device> {
    const n = normalizeName(name);
    await this.#updateOne(id, { name: n });
    return this.#get(id);
  }

  /** Revokes the credential; the device can no longer connect. Revoking twice keeps the first time. */
  async revoke(id: string, at: Date = this.#now()): Promise<Device> {
    await this.#prisma.device.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: at } });
    return this.#get(id);
  }

  /** Deletes the device for good. */
  async remove(id: string): Promise<void> {
    const { count } = await this.#prisma.device.deleteMany({ where: { id } });
    if (count === 0) throw new RelayError('RELAY_DEVICE_NOT_FOUND', [id]);
  }

  /**
   * Records a tunnel coming up (`online`) or going down at `at`. Returns false if the device is
   * gone (removed while connected), instead of throwing: disconnect paths must not fail.
   */
  async markSeen(id: string, online: boolean, at: Date = this.#now()): Promise<boolean> {
    const { count } = await this.#prisma.device.updateMany({
      where: { id },
      data: { lastSeenAt: at, offlineSince: online ? null : at },
    });
    return count > 0;
  }

  async #get(id: string): Promise<Device> {
    const device = await this.findById(id);
    if (!device) throw new RelayError('RELAY_DEVICE_NOT_FOUND', [id]);
    return device;
  }

  async #updateOne(id: string, data: Prisma.DeviceUpdateManyMutationInput): Promise<void> {
    const { count } = await this.#prisma.device.updateMany({ where: { id }, data });
    if (count === 0) throw new RelayError('RELAY_DEVICE_NOT_FOUND', [id]);
  }

  /** `base`, else `base-2`, `base-3`…, skipping taken and invalid ones. */
  async #freeSlug(base: string): Promise<string> {
    const stem = base.slice(0, SLUG_MAX - 4).replace(/-+$/, '');
    const taken = new Set(
      (
        await this.#prisma.device.findMany({
          where: { OR: [{ slug: base }, { slug: { startsWith: `${stem}-` } }] },
          select: { slug: true },
        })
      ).map((d) => d.slug),
    );
    if (!taken.has(base) && slugProblem(base) === null) return base;
    for (let n = 2; n < 10_000; n++) {
      const candidate = `${stem}-${n}`;
      if (!taken.has(candidate) && slugProblem(candidate) === null) return candidate;
    }
    throw new RelayError('RELAY_SLUG_TAKEN', [base]);
  }
}

function isUniqueViolation(err: unknown): err is Prisma.PrismaClientKnownRequestError {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

/** The columns a P2002 is about; driver adapters report them in a different place than the Rust engine. */
function uniqueFields(err: Prisma.PrismaClientKnownRequestError): string[] {
  const meta = err.meta as
    | { target?: unknown; driverAdapterError?: { cause?: { constraint?: { fields?: unknown } } } }
    | undefined;
  const fields = meta?.driverAdapterError?.cause?.constraint?.fields ?? meta?.target;
  return Array.isArray(fields) ? fields.map(String) : typeof fields === 'string' ? [fields] : [];
}
