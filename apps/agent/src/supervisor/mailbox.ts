/** An unbounded single-consumer queue: producers push, the one loop awaits next(). */
export class Mailbox<T> {
  private items: T[] = [];
  private head = 0;
  private wake: (() => void) | undefined;

  push(item: T): void {
    this.items.push(item);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async next(): Promise<T> {
    while (this.head === this.items.length) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    const item = this.items[this.head++]!;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    }
    return item;
  }
}
