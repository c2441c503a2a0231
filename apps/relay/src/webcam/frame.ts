/** The multipart boundary of every stream the relay serves. */
export const BOUNDARY = 'portholeframe';

export const CRLF = Buffer.from('\r\n');

/**
 * One picture, as every viewer of a camera receives it: the part head is built once and the
 * JPEG is shared, so ten viewers cost ten references, not ten copies.
 */
export interface Frame {
  /** Increasing per camera; a viewer never gets the same frame twice. */
  seq: number;
  jpeg: Buffer;
  /** `--BOUNDARY`, Content-Type, Content-Length, X-Timestamp and the blank line. */
  head: Buffer;
  /** performance.now() when it arrived from the camera (or was made, for a placeholder). */
  at: number;
  /** Set on the "camera/printer offline" image. */
  placeholder?: 'camera' | 'device';
}

export function makeFrame(seq: number, jpeg: Buffer, at: number, placeholder?: 'camera' | 'device'): Frame {
  const now = Date.now();
  const stamp = `${Math.floor(now / 1000)}.${String((now % 1000) * 1000).padStart(6, '0')}`;
  const head = Buffer.from(
    `--${BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\nX-Timestamp: ${stamp}\r\n` +
      (placeholder !== undefined ? `X-Porthole-Placeholder: ${placeholder}\r\n` : '') +
      '\r\n',
    'latin1',
  );
  return { seq, jpeg, head, at, ...(placeholder !== undefined ? { placeholder } : {}) };
}

/** Response headers of a relay-served MJPEG stream. */
export function streamHeaders(): Record<string, string> {
  return {
    'content-type': `multipart/x-mixed-replace;boundary=${BOUNDARY}`,
    'cache-control': 'no-store, no-cache, must-revalidate, max-age=0',
    pragma: 'no-cache',
    'x-content-type-options': 'nosniff',
  };
}
