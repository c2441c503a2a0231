/** "3 minutes ago" / "in 2 hours", from an ISO date. */
export function relative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const diff = new Date(iso).getTime() - now;
  const s = Math.round(Math.abs(diff) / 1000);
  const text =
    s < 60 ? `${s} s` : s < 90 * 60 ? `${Math.round(s / 60)} min` : s < 36 * 3600 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} days`;
  if (s < 5) return 'just now';
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

/** "23 Nov, 14:05": short, local time. */
export function when(iso: string | null | undefined): string {
  if (!iso) return 'never';
  return new Date(iso).toLocaleString(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
}

/** "OctoPrint on Mozilla/5.0 (Linux; Android 14…)" is long: keep the browser and OS. */
export function shortAgent(ua: string | null): string {
  if (!ua) return 'Unknown browser';
  const browser = /(Firefox|Edg|Chrome|Safari)\/[\d.]+/.exec(ua)?.[1] ?? 'Browser';
  const os = /(Android|iPhone|iPad|Mac OS X|Windows|Linux)/.exec(ua)?.[1] ?? '';
  return `${browser === 'Edg' ? 'Edge' : browser}${os ? ` on ${os === 'Mac OS X' ? 'macOS' : os}` : ''}`;
}
