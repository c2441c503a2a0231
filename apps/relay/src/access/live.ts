/**
 * Long-lived connections (WebSockets, camera streams, slow downloads) by the session they ride
 * on, so a revoked session, an expired share link or a revoked device cuts them at once instead
 * of at their next request.
 */
export class LiveConnections {
  private readonly bySession = new Map<string, Set<() => void>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();

  /** Registers `cut` for the session; it runs on revoke or at `expiresAt`. Returns an untrack. */
  track(sessionId: string, expiresAt: Date, cut: () => void): () => void {
    let set = this.bySession.get(sessionId);
    if (set === undefined) {
      set = new Set();
      this.bySession.set(sessionId, set);
      const ms = expiresAt.getTime() - Date.now();
      // setTimeout's limit is ~24.8 days; longer sessions are checked at their next request.
      if (ms < 2 ** 31 - 1) {
        const t = setTimeout(() => this.cut([sessionId]), Math.max(0, ms));
        t.unref();
        this.timers.set(sessionId, t);
      }
    }
    set.add(cut);
    const s = set;
    return () => {
      s.delete(cut);
      if (s.size === 0 && this.bySession.get(sessionId) === s) this.forget(sessionId);
    };
  }

  cut(sessionIds: Iterable<string>): number {
    let n = 0;
    for (const id of sessionIds) {
      const set = this.bySession.get(id);
      this.forget(id);
      if (set === undefined) continue;
      for (const c of set) {
        n++;
        try {
          c();
        } catch {
          /* already gone */
        }
      }
    }
    return n;
  }

  get size(): number {
    let n = 0;
    for (const s of this.bySession.values()) n += s.size;
    return n;
  }

  private forget(id: string): void {
    this.bySession.delete(id);
    const t = this.timers.get(id);
    if (t !== undefined) clearTimeout(t);
    this.timers.delete(id);
  }
}
