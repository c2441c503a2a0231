/**
 * Just enough validation for untrusted JSON: the agent's config file and the relay's pairing answers.
 * (The agent used zod for this; on the Pi's Node 18 it cost about 3 MB of resident memory, against
 * an idle budget of 60 MB.)
 *
 * Each check takes the issue list, the path of the value and the value; it records every problem
 * as `{ path, message }` and carries on, so one pass names every bad field. It returns the value
 * when it is acceptable and undefined when it is not (or, for an optional field, absent): trust a
 * result only when no issue was recorded.
 *
 * The rules are the ones zod applied before, so the messages stay the same: a value of the wrong
 * type is `required` when missing and `must be <what>` otherwise; every rule of a value that has
 * the right type runs, so all failing ones are reported. Two deliberate differences: a value of
 * the wrong type gets that one message (zod went on to run the length rules on anything with a
 * `.length`: `credential: []` also said `credential: required`), and a map key `__proto__` is
 * an ordinary key (zod dropped it without a word).
 */

export type Path = readonly (string | number)[];

export interface Issue {
  readonly path: Path;
  readonly message: string;
}

/** A rule a value must also meet, and the message when it does not. */
export type Rule<T> = readonly [ok: (value: T) => boolean, message: string];

/** A JSON object: not null, not an array. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An own property's value: nothing is ever read through the prototype (`__proto__`, `constructor`). */
export function own(o: object, key: string): unknown {
  return Object.hasOwn(o, key) ? (o as Record<string, unknown>)[key] : undefined;
}

export function report(issues: Issue[], path: Path, message: string): undefined {
  issues.push({ path, message });
  return undefined;
}

function wrongType(issues: Issue[], path: Path, value: unknown, what: string): undefined {
  return report(issues, path, value === undefined ? 'required' : `must be ${what}`);
}

function rules<T>(issues: Issue[], path: Path, value: T, list: readonly Rule<T>[]): T | undefined {
  const before = issues.length;
  for (const [ok, message] of list) if (!ok(value)) report(issues, path, message);
  return issues.length === before ? value : undefined;
}

export function string(issues: Issue[], path: Path, value: unknown, what: string, list: readonly Rule<string>[] = []): string | undefined {
  return typeof value === 'string' ? rules(issues, path, value, list) : wrongType(issues, path, value, what);
}

export function boolean(issues: Issue[], path: Path, value: unknown, what: string): boolean | undefined {
  return typeof value === 'boolean' ? value : wrongType(issues, path, value, what);
}

export function oneOf<T extends string>(issues: Issue[], path: Path, value: unknown, allowed: readonly T[], what: string): T | undefined {
  return allowed.includes(value as T) ? (value as T) : wrongType(issues, path, value, what);
}

/**
 * An integer in [min, max]. A fraction is reported alone; an integer beyond ±2^53 is reported as
 * not an integer and still gets the range checks.
 */
export function integer(issues: Issue[], path: Path, value: unknown, what: string, min: number, max: number): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return wrongType(issues, path, value, what);
  if (!Number.isInteger(value)) return report(issues, path, 'must be an integer');
  return rules(issues, path, value, [
    [Number.isSafeInteger, 'must be an integer'],
    [(n) => n >= min, `must be at least ${min}`],
    [(n) => n <= max, `must be at most ${max}`],
  ]);
}

/** The value, or `fallback` when it is absent (undefined; null is a value of the wrong type). */
export function withDefault<T>(value: unknown, fallback: T, check: (value: unknown) => T | undefined): T | undefined {
  return value === undefined ? fallback : check(value);
}

/** undefined when absent, otherwise as `check` says. */
export function optional<T>(value: unknown, check: (value: unknown) => T | undefined): T | undefined {
  return value === undefined ? undefined : check(value);
}

/**
 * An object with these fields and no others: `read` checks the fields, then each other key is
 * reported as `<path>.<key>: unknown field`.
 */
export function strictObject<T>(
  issues: Issue[],
  path: Path,
  value: unknown,
  fields: readonly string[],
  read: (o: object) => T | undefined,
): T | undefined {
  if (!isObject(value)) return wrongType(issues, path, value, 'an object');
  const result = read(value);
  for (const key of Object.keys(value)) if (!fields.includes(key)) report(issues, [...path, key], 'unknown field');
  return result;
}

/**
 * A map of name → entry. The result has no prototype, so a `__proto__` name is a name like any
 * other (and gets reported by the caller's name rule) rather than a way to swap the prototype.
 */
export function record<T>(
  issues: Issue[],
  path: Path,
  value: unknown,
  what: string,
  entry: (path: Path, value: unknown) => T | undefined,
): Record<string, T> | undefined {
  // A plain object only: not an array, a Map, a Date or a class instance.
  if (!isObject(value) || ![Object.prototype, null].includes(Object.getPrototypeOf(value) as object | null)) {
    return wrongType(issues, path, value, what);
  }
  const out = Object.create(null) as Record<string, T>;
  const before = issues.length;
  for (const key of Object.keys(value)) {
    const v = entry([...path, key], value[key]);
    if (v !== undefined) out[key] = v;
  }
  return issues.length === before ? out : undefined;
}

/**
 * A list of `min` to `max` entries. A longer list is reported without looking at its entries, so
 * a huge one costs nothing.
 */
export function list<T>(
  issues: Issue[],
  path: Path,
  value: unknown,
  what: string,
  length: { min: number; max: number; tooShort: string; tooLong: string },
  entry: (path: Path, value: unknown) => T | undefined,
): T[] | undefined {
  if (!Array.isArray(value)) return wrongType(issues, path, value, what);
  if (value.length > length.max) return report(issues, path, length.tooLong);
  const before = issues.length;
  const out: T[] = [];
  for (let i = 0; i < value.length; i++) {
    const v = entry([...path, i], value[i]);
    if (v !== undefined) out.push(v);
  }
  if (value.length < length.min) report(issues, path, length.tooShort);
  return issues.length === before ? out : undefined;
}
