// Desktop notifications (opt-in: permission is asked from a click) and the page title with the
// unread and mention counts.

import { state, type Buffer } from './state.js';

const supported = (): boolean => typeof Notification !== 'undefined';

/** Toggles notifications; asking permission must happen in a user gesture (the click). */
export async function toggleNotifications(): Promise<boolean> {
  if (!supported()) return false;
  if (state.notify) {
    state.notify = false;
    return false;
  }
  const perm = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
  state.notify = perm === 'granted';
  return state.notify;
}

export const notificationsAvailable = supported;

/** A mention or a DM: a desktop notification when enabled and the user is not looking. */
export function notify(b: Buffer, from: string, text: string): void {
  if (!state.notify || !supported() || Notification.permission !== 'granted') return;
  if (document.visibilityState === 'visible' && document.hasFocus() && state.current === b.key) return;
  try {
    // Notification text is plain text: no markup is interpreted.
    const n = new Notification(b.kind === 'dm' ? from : `${from} in ${b.name}`, { body: text.slice(0, 300), tag: b.key });
    n.onclick = () => {
      window.focus();
      window.dispatchEvent(new CustomEvent('parley-select', { detail: b.key }));
      n.close();
    };
  } catch {
    // Some browsers only allow notifications from a service worker: no notification then.
  }
}

/** "(3) [1] #chan · Parley": unread messages and mentions in other buffers. */
export function title(currentName: string): string {
  let unread = 0;
  let mentions = 0;
  for (const b of state.buffers.values()) {
    unread += b.unread;
    mentions += b.mentions;
  }
  const counts = `${unread ? `(${unread}) ` : ''}${mentions ? `[${mentions}] ` : ''}`;
  return `${counts}${currentName ? `${currentName} · ` : ''}Parley`;
}
