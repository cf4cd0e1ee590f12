export { ParleyServer, StartupError } from './server.js';
export { ClusterConfigSchema, InstanceOptionsSchema, parseClusterConfig, defaultClusterConfig, describeZodError } from './config.js';
export type { ClusterConfig, InstanceOptions } from './config.js';
export type { InstanceRecord } from '@parley/contracts';
