import type { IrcMessage } from '@parley/protocol';
import type { IrcClient } from '@parley/client';

/** Waits for a message, including one that arrived before the call (waitFor only sees new ones). */
export function seen(c: IrcClient, pred: (m: IrcMessage) => boolean, timeoutMs = 5000): Promise<IrcMessage> {
  const old = c.messages.find(pred);
  return old ? Promise.resolve(old) : c.waitFor(pred, timeoutMs);
}
