// The configuration page's side of the REST API (docs/http-api.md): requests with the admin
// token and If-Match, and the way an answer is shown: a 400 next to the field it names, a 412
// with a reload, 401/403 next to the token.

const TOKEN_KEY = 'parley.adminToken';

export interface ErrorBody {
  error: string;
  statusCode: number;
  field?: string;
  etag?: string;
}

export type Answer<T> = { ok: true; status: number; etag: string | null; body: T } | { ok: false; status: number; etag: string | null; body: ErrorBody };

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** One request; a network failure or a non-JSON error becomes an ErrorBody, never a throw. */
export async function api<T>(method: string, url: string, o: { body?: unknown; ifMatch?: string | null } = {}): Promise<Answer<T>> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const t = token();
  if (t && method !== 'GET') headers.authorization = `Bearer ${t}`;
  if (o.ifMatch) headers['if-match'] = o.ifMatch;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(url, { method, headers, cache: 'no-store', ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}) });
  } catch (err) {
    return { ok: false, status: 0, etag: null, body: { error: `the server did not answer (${(err as Error).message})`, statusCode: 0 } };
  }
  const etag = res.headers.get('etag');
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: text.slice(0, 200) || res.statusText, statusCode: res.status };
  }
  if (res.ok) return { ok: true, status: res.status, etag, body: body as T };
  const e = (body ?? {}) as Partial<ErrorBody>;
  return { ok: false, status: res.status, etag, body: { error: e.error ?? res.statusText, statusCode: res.status, ...(e.field ? { field: e.field } : {}), ...(e.etag ? { etag: e.etag } : {}) } };
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

/** A notice at the top of a section: replaces the previous one. `reload` adds a Reload button. */
export function notice(section: HTMLElement, kind: 'good' | 'bad', text: string, reload?: () => void): void {
  const box = section.querySelector('.notices');
  if (!box) return;
  const n = el('div', { className: `notice ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, text);
  if (reload) {
    const b = el('button', { type: 'button', className: 'reload' }, 'Reload');
    b.addEventListener('click', reload);
    n.append(b);
  }
  box.replaceChildren(n);
}

export function clearErrors(scope: HTMLElement): void {
  for (const e of scope.querySelectorAll('.invalid')) e.classList.remove('invalid');
  for (const e of scope.querySelectorAll('.field-error')) e.textContent = '';
  const box = scope.querySelector('.notices');
  box?.replaceChildren();
}

/**
 * Shows a failed write: a 400 next to the input whose `data-field` is the field the API names
 * (in `scope`; else in the section's notice, naming it), a 412 with a reload, an auth problem
 * about the token.
 */
export function showFailure(section: HTMLElement, scope: HTMLElement, a: { status: number; body: ErrorBody }, what: string, reload: () => void): void {
  const b = a.body;
  if (a.status === 400 && b.field) {
    const input = scope.querySelector<HTMLElement>(`[data-field="${CSS.escape(b.field)}"]`);
    const slot = input?.parentElement?.querySelector('.field-error');
    if (input && slot) {
      input.classList.add('invalid');
      slot.textContent = b.error.replace(/^[^:]*: /, '');
      input.focus();
      notice(section, 'bad', `${what}: not saved, see the field marked in red.`);
      return;
    }
    notice(section, 'bad', `${what}: ${b.field}: ${b.error}`);
    return;
  }
  if (a.status === 412) {
    notice(section, 'bad', `${what} was changed by someone else since this page read it (now ${b.etag ?? 'another revision'}). Your edit was not saved: reload to see the current value.`, reload);
    return;
  }
  if (a.status === 401) {
    notice(section, 'bad', `${what}: the admin token is missing or wrong (enter it above).`);
    return;
  }
  if (a.status === 403) {
    notice(section, 'bad', `${what}: this instance accepts no changes (it was started without an admin token).`);
    return;
  }
  notice(section, 'bad', `${what}: ${b.error} (HTTP ${a.status || 'no answer'})`);
}

/** A labelled input with its error slot, for a cell or a form. */
export function field(label: string | null, input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, name: string): HTMLElement {
  input.dataset.field = name;
  const parts: Node[] = [];
  if (label !== null) parts.push(el('span', {}, label));
  parts.push(input, el('span', { className: 'field-error' }));
  return el(label === null ? 'div' : 'label', { className: 'field' }, ...parts);
}

export function numberInput(value: number | null | undefined, step = 'any'): HTMLInputElement {
  return el('input', { type: 'number', step, value: value === null || value === undefined ? '' : String(value) });
}

/** An optional number: empty is "not set" (undefined); anything else is sent as typed, so the API judges it. */
export function optionalNumber(input: HTMLInputElement): number | undefined {
  if (input.value.trim() === '') return undefined;
  return Number(input.value);
}

export function select(values: Array<[string, string]>, chosen: string): HTMLSelectElement {
  const s = el('select');
  for (const [v, label] of values) s.append(el('option', { value: v }, label));
  s.value = chosen;
  return s;
}
