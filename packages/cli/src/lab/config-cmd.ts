/**
 * `parley config`: the cluster's etcd tree. get/set/edit/validate work on the cluster configuration
 * (`/<prefix>/config`, validated by the server's own schema); `get KEY` reads any key; export and
 * import turn the whole tree into a directory of JSON files and back, so the same configuration can
 * be reviewed, versioned and applied elsewhere.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import {
  ClusterConfigSchema,
  RoomPinSchema,
  ShardEntryError,
  ShardEntrySchema,
  describeZodError,
  etcdKeys,
  mergeShardEntry,
  parseClusterConfig,
  parsePlan,
} from '@parley/contracts';
import { etcdEndpoints, stateDirKind, statePaths } from '@parley/agent';
import { LabError, etcdAuthOf, readHostFile } from './common.js';

export interface ConfigCmdOptions {
  etcd?: string[];
  prefix?: string;
  stateDir: string;
  /** with --etcd: the user and the file with its password (etcd with authentication) */
  etcdUser?: string;
  etcdPasswordFile?: string;
}

const EXPORT_MARKER = '.parley-export.json';

async function connect(o: ConfigCmdOptions): Promise<{ client: Etcd3; prefix: string }> {
  let hosts = o.etcd?.length ? o.etcd : undefined;
  let prefix = o.prefix;
  let login: ReturnType<typeof etcdAuthOf> = {};
  if (!hosts) {
    const p = statePaths(o.stateDir);
    const host = stateDirKind(p.root) === 'parley' ? await readHostFile(p) : undefined;
    if (!host) throw new LabError(`no --etcd given and no cluster set up in ${p.root} (start one with: parley up, or pass --etcd URLS)`);
    hosts = etcdEndpoints(host);
    prefix ??= host.prefix;
    login = etcdAuthOf(host);
  } else if (o.etcdPasswordFile !== undefined) {
    login = etcdAuthOf({ version: 1, host: 'cli', prefix: 'parley', etcd: { managed: false, endpoints: hosts }, etcdAuth: { user: o.etcdUser ?? 'root', passwordFile: o.etcdPasswordFile } });
  }
  return { client: new Etcd3({ hosts, dialTimeout: 2_000, ...login }), prefix: prefix ?? 'parley' };
}

async function readValue(action: string, value: string | undefined): Promise<string> {
  if (value === undefined) throw new LabError(`config ${action} needs a JSON value (or @file)`);
  if (!value.startsWith('@')) return value;
  return fs.readFile(value.slice(1), 'utf8').catch((err: Error) => {
    throw new LabError(`cannot read ${value.slice(1)}: ${err.message}`);
  });
}

/** `KEY` relative to the prefix, or absolute (`/parley/shards/0`). */
function absKey(prefix: string, key: string): string {
  return key.startsWith('/') ? key : etcdKeys(prefix).root + key;
}

export async function runConfig(action: string, value: string | undefined, o: ConfigCmdOptions): Promise<void> {
  if (action === 'validate') {
    const r = parseClusterConfig(await readValue(action, value));
    if (!r.ok) throw new LabError(`invalid configuration: ${r.error}`);
    process.stdout.write('valid\n');
    return;
  }
  const actions = ['get', 'set', 'edit', 'export', 'import', 'validate'];
  if (!actions.includes(action)) throw new LabError(`unknown config action '${action}' (expected ${actions.join(', ')})`);
  if ((action === 'export' || action === 'import') && !value) throw new LabError(`config ${action} needs a directory, e.g. parley config ${action} ./cluster-config`);
  const { client, prefix } = await connect(o);
  const key = etcdKeys(prefix).config;
  try {
    await client.get(key).exec().catch((err: Error) => {
      throw new LabError(`cannot reach etcd: ${err.message.split('\n')[0]}`);
    });
    switch (action) {
      case 'get': {
        if (value !== undefined && value !== 'config') {
          const k = absKey(prefix, value);
          if (k.endsWith('/')) {
            const all = await client.getAll().prefix(k).strings();
            const out = Object.fromEntries(Object.entries(all).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })).map(([kk, v]) => [kk, tryJson(v)]));
            process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
            return;
          }
          const text = await client.get(k).string();
          if (text === null) throw new LabError(`no key ${k}`);
          const v = tryJson(text);
          process.stdout.write(`${typeof v === 'string' ? v : JSON.stringify(v, null, 2)}\n`);
          return;
        }
        const text = await client.get(key).string();
        const cfg = ClusterConfigSchema.safeParse(text ? JSON.parse(text) : {});
        if (!cfg.success) throw new LabError(`the stored configuration is invalid: ${describeZodError(cfg.error)}`);
        process.stdout.write(`${JSON.stringify(cfg.data, null, 2)}\n`);
        return;
      }
      case 'set': {
        const r = parseClusterConfig(await readValue(action, value));
        if (!r.ok) throw new LabError(`invalid configuration: ${r.error}`);
        await client.put(key).value(JSON.stringify(r.config));
        process.stdout.write(`stored ${key}\n`);
        return;
      }
      case 'edit':
        await edit(client, key);
        return;
      case 'export':
        await exportTree(client, prefix, value!);
        return;
      case 'import':
        await importTree(client, prefix, value!);
        return;
    }
  } finally {
    client.close();
  }
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function edit(client: Etcd3, key: string): Promise<void> {
  const res = await client.get(key).exec();
  const kv = res.kvs[0];
  const cfg = ClusterConfigSchema.safeParse(kv ? JSON.parse(kv.value.toString()) : {});
  const before = `${JSON.stringify(cfg.success ? cfg.data : JSON.parse(kv!.value.toString()), null, 2)}\n`;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'parley-config-'));
  const file = path.join(dir, 'config.json');
  await fs.writeFile(file, before);
  const editor = process.env.VISUAL || process.env.EDITOR || 'vi';
  const r = spawnSync(`${editor} '${file.replace(/'/g, "'\\''")}'`, { shell: true, stdio: 'inherit' });
  if (r.status !== 0) throw new LabError(`the editor (${editor}) exited with ${r.status ?? r.signal}; nothing changed (your edit: ${file})`);
  const after = await fs.readFile(file, 'utf8');
  if (after === before) {
    await fs.rm(dir, { recursive: true, force: true });
    process.stdout.write('no change\n');
    return;
  }
  const parsed = parseClusterConfig(after);
  if (!parsed.ok) throw new LabError(`invalid configuration: ${parsed.error}; nothing changed (your edit is in ${file}; apply it with parley config set @${file})`);
  const rev = kv ? kv.mod_revision : '0';
  const t = await client.if(key, 'Mod', '==', rev).then(client.put(key).value(JSON.stringify(parsed.config))).commit();
  if (!t.succeeded) throw new LabError(`${key} changed while you edited it; nothing changed (your edit is in ${file})`);
  await fs.rm(dir, { recursive: true, force: true });
  process.stdout.write(`stored ${key}\n`);
}

// ---- export / import ------------------------------------------------------------------------

/** A key below the prefix as a file path: segments become directories, the value a .json (or .raw) file. */
function keyToFile(rel: string, isJson: boolean): string | null {
  const segs = rel.split('/');
  if (segs.some((s) => s === '' || s === '.' || s === '..' || s.startsWith('.'))) return null;
  return `${segs.join('/')}${isJson ? '.json' : '.raw'}`;
}

async function exportTree(client: Etcd3, prefix: string, dir: string): Promise<void> {
  const root = etcdKeys(prefix).root;
  const res = await client.getAll().prefix(root).exec();
  const abs = path.resolve(dir);
  const entries = await fs.readdir(abs).catch(() => null);
  if (entries && entries.length > 0) {
    if (!entries.includes(EXPORT_MARKER)) throw new LabError(`${abs} is not empty and holds no earlier export (${EXPORT_MARKER}); choose an empty or new directory`);
    // Replace the earlier export: keys removed from etcd must not linger as files.
    const old = JSON.parse(await fs.readFile(path.join(abs, EXPORT_MARKER), 'utf8')) as { files?: string[] };
    for (const f of old.files ?? []) await fs.rm(path.join(abs, f), { force: true });
  }
  await fs.mkdir(abs, { recursive: true });
  const files: string[] = [];
  const skipped: string[] = [];
  let leased = 0;
  for (const kv of res.kvs) {
    // Leased keys (the instance registry) are runtime state, not configuration.
    if (kv.lease !== '0') {
      leased++;
      continue;
    }
    const key = kv.key.toString();
    const text = kv.value.toString();
    const json = tryJsonStrict(text);
    const rel = keyToFile(key.slice(root.length), json !== undefined);
    if (!rel) {
      skipped.push(key);
      continue;
    }
    const file = path.join(abs, rel);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, json !== undefined ? `${JSON.stringify(json, null, 2)}\n` : text);
    files.push(rel);
  }
  await fs.writeFile(path.join(abs, EXPORT_MARKER), `${JSON.stringify({ prefix, exportedAt: new Date().toISOString(), revision: res.header.revision, files: files.sort() }, null, 2)}\n`);
  await removeEmptyDirs(abs);
  process.stdout.write(`exported ${files.length} key(s) under ${root} to ${abs}${leased ? ` (left out ${leased} leased runtime key(s): the instance registry)` : ''}\n`);
  if (skipped.length) process.stdout.write(`skipped keys that cannot be file names: ${skipped.join(', ')}\n`);
}

function tryJsonStrict(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

async function removeEmptyDirs(dir: string): Promise<boolean> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  let empty = true;
  for (const e of entries) {
    if (e.isDirectory()) {
      if (await removeEmptyDirs(path.join(dir, e.name))) await fs.rmdir(path.join(dir, e.name));
      else empty = false;
    } else empty = false;
  }
  return empty;
}

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, r)));
    else out.push(r);
  }
  return out;
}

/**
 * Checks one file's value for its key (`prefix` is the cluster's); returns the value to store, or
 * throws a LabError. A shard entry is written as the file has it (an import replaces the entry),
 * through the same merge as every other writer, which fills in what a new entry gets by default.
 */
function validateEntry(prefix: string, rel: string, key: string, text: string, isJson: boolean): string {
  const ref = etcdKeys(prefix).parse(key);
  if (ref?.kind === 'instance') throw new LabError(`${rel}: instances/ are runtime registrations made by running servers; remove it from the directory`);
  if (ref?.kind === 'invalid') throw new LabError(`${rel}: ${ref.reason}`);
  if (!isJson) return text;
  const json = tryJsonStrict(text);
  if (json === undefined) throw new LabError(`${rel}: not valid JSON`);
  switch (ref?.kind) {
    case 'config': {
      const r = parseClusterConfig(text);
      if (!r.ok) throw new LabError(`${rel}: invalid configuration: ${r.error}`);
      return JSON.stringify(r.config);
    }
    case 'shard': {
      const r = ShardEntrySchema.safeParse(json);
      if (!r.success) throw new LabError(`${rel}: invalid shard entry: ${describeZodError(r.error)}`);
      if (r.data.id !== ref.id) throw new LabError(`${rel}: its id ${r.data.id} must equal the key's shard number ${ref.id}`);
      try {
        return JSON.stringify(mergeShardEntry(r.data, { id: ref.id, url: r.data.url }));
      } catch (err) {
        if (err instanceof ShardEntryError) throw new LabError(`${rel}: ${err.message}`);
        throw err;
      }
    }
    case 'room': {
      const r = RoomPinSchema.safeParse(json);
      if (!r.success) throw new LabError(`${rel}: invalid room entry: ${describeZodError(r.error)}`);
      return JSON.stringify(r.data);
    }
    case 'hostPlan': {
      const r = parsePlan(text);
      if (!r.ok) throw new LabError(`${rel}: invalid host plan: ${r.error}`);
      return JSON.stringify(json);
    }
    default:
      return JSON.stringify(json);
  }
}

async function importTree(client: Etcd3, prefix: string, dir: string): Promise<void> {
  const abs = path.resolve(dir);
  const st = await fs.stat(abs).catch(() => null);
  if (!st?.isDirectory()) throw new LabError(`${abs} is not a directory`);
  const files = (await listFiles(abs)).sort();
  if (files.length === 0) throw new LabError(`${abs} holds no files to import`);
  const puts: Array<{ key: string; value: string }> = [];
  for (const rel of files) {
    const isJson = rel.endsWith('.json');
    if (!isJson && !rel.endsWith('.raw')) throw new LabError(`${rel}: unexpected file (an export holds only .json and .raw files)`);
    const key = etcdKeys(prefix).root + rel.slice(0, rel.length - (isJson ? 5 : 4));
    const text = await fs.readFile(path.join(abs, rel), 'utf8');
    puts.push({ key, value: validateEntry(prefix, rel, key, text, isJson) });
  }
  // etcd allows 128 operations per transaction by default.
  for (let i = 0; i < puts.length; i += 100) {
    const batch = puts.slice(i, i + 100);
    const ops = batch.map((p) => client.put(p.key).value(p.value));
    await client.if(etcdKeys(prefix).config, 'Version', '>', -1).then(...ops).commit();
  }
  process.stdout.write(`imported ${puts.length} key(s) from ${abs} into ${etcdKeys(prefix).root}\n`);
}
