import fs from 'node:fs/promises';
import { Etcd3 } from 'etcd3';
import { ClusterConfigSchema, describeZodError, parseClusterConfig } from '@parley/server';
import { clusterFile, type ClusterFile } from './up.js';

export interface ConfigCmdOptions {
  etcd?: string[];
  prefix: string;
  stateDir: string;
}

async function endpoints(o: ConfigCmdOptions): Promise<string[]> {
  if (o.etcd?.length) return o.etcd;
  const text = await fs.readFile(clusterFile(o.stateDir), 'utf8').catch(() => null);
  if (!text) throw new Error(`no --etcd given and no running cluster found in ${o.stateDir} (start one with: parley up)`);
  return [(JSON.parse(text) as ClusterFile).etcd];
}

/** `parley config get|set|validate`: the cluster configuration in etcd, validated by the server's own schema. */
export async function runConfig(action: string, value: string | undefined, o: ConfigCmdOptions): Promise<void> {
  const readValue = async (): Promise<string> => {
    if (value === undefined) throw new Error(`config ${action} needs a JSON value (or @file)`);
    return value.startsWith('@') ? fs.readFile(value.slice(1), 'utf8') : value;
  };
  if (action === 'validate') {
    const r = parseClusterConfig(await readValue());
    if (!r.ok) throw new Error(`invalid configuration: ${r.error}`);
    process.stdout.write('valid\n');
    return;
  }
  if (action !== 'get' && action !== 'set') throw new Error(`unknown config action '${action}' (expected get, set or validate)`);
  const client = new Etcd3({ hosts: await endpoints(o), dialTimeout: 2000 });
  const key = `/${o.prefix}/config`;
  try {
    if (action === 'get') {
      const text = await client.get(key).string();
      const cfg = ClusterConfigSchema.safeParse(text ? JSON.parse(text) : {});
      if (!cfg.success) throw new Error(`the stored configuration is invalid: ${describeZodError(cfg.error)}`);
      process.stdout.write(`${JSON.stringify(cfg.data, null, 2)}\n`);
      return;
    }
    const r = parseClusterConfig(await readValue());
    if (!r.ok) throw new Error(`invalid configuration: ${r.error}`);
    await client.put(key).value(JSON.stringify(r.config));
    process.stdout.write(`stored ${key}\n`);
  } finally {
    client.close();
  }
}
