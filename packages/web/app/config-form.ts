// The cluster configuration as a form generated from its JSON value (so a member added to the
// schema shows up without a change here): an object is a fieldset, a number a number input, a
// list of strings a text area (one per line), any other list a text area of JSON, null or a
// string a text input (emptied: null).
// Every input's `data-field` is the member's dotted path, the `field` of the API's 400.

import { el, field } from './config-api.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function input(path: string, value: Json): HTMLElement {
  const label = path.split('.').at(-1) ?? path;
  if (typeof value === 'number') {
    const i = el('input', { type: 'number', step: 'any', value: String(value) });
    i.dataset.kind = 'number';
    return field(label, i, path);
  }
  if (typeof value === 'boolean') {
    const i = el('input', { type: 'checkbox', checked: value });
    i.dataset.kind = 'boolean';
    return field(label, i, path);
  }
  if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) {
    const t = el('textarea', { value: value.join('\n') });
    t.dataset.kind = 'lines';
    return field(`${label} (one per line)`, t, path);
  }
  // A list of objects (opers), or an empty list whose items the page cannot know: JSON.
  if (Array.isArray(value)) {
    const t = el('textarea', { value: JSON.stringify(value, null, 1) });
    t.dataset.kind = 'json';
    return field(`${label} (JSON)`, t, path);
  }
  const i = el('input', { value: value === null ? '' : String(value), placeholder: value === null ? '(none)' : '' });
  i.dataset.kind = value === null ? 'nullable' : 'string';
  return field(label, i, path);
}

/** Fieldsets for `value`: its scalar members together first, then one per object member. */
export function configForm(value: Record<string, unknown>, prefix = '', title = 'general'): HTMLElement[] {
  const scalars: HTMLElement[] = [];
  const nested: HTMLElement[] = [];
  for (const [k, v] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) nested.push(...configForm(v as Record<string, unknown>, path, k));
    else scalars.push(input(path, v as Json));
  }
  const out: HTMLElement[] = [];
  if (scalars.length) out.push(el('fieldset', {}, el('legend', {}, title), ...scalars));
  return [...out, ...nested];
}

function put(target: Record<string, unknown>, path: string[], value: unknown): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  if (rest.length === 0) {
    target[head] = value;
    return;
  }
  const next = (target[head] ??= {}) as Record<string, unknown>;
  put(next, rest, value);
}

/**
 * The form's value, or the first member that is not even JSON (as the API's 400 would name it).
 * A number input left empty is sent as null, so the API names the field.
 */
export function readConfigForm(form: HTMLElement): { value: Record<string, unknown> } | { field: string; error: string } {
  const out: Record<string, unknown> = {};
  for (const e of form.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>('[data-field]')) {
    const path = e.dataset.field ?? '';
    const kind = e.dataset.kind;
    let v: unknown;
    if (kind === 'number') v = e.value.trim() === '' ? null : Number(e.value);
    else if (kind === 'boolean') v = (e as HTMLInputElement).checked;
    else if (kind === 'json') {
      try {
        v = JSON.parse(e.value || 'null') as unknown;
      } catch (err) {
        return { field: path, error: `${path}: not JSON (${(err as Error).message})` };
      }
    } else if (kind === 'lines') v = e.value.split('\n').map((l) => l.trimEnd()).filter((l) => l !== '');
    // An emptied text is null: a nullable member (the server password) is cleared, another one refused by name.
    else v = e.value === '' ? null : e.value;
    put(out, path.split('.'), v);
  }
  return { value: out };
}
