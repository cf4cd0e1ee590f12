export { ParleyServer } from './server.js';
export { StartupError } from './startup.js';
export { ClusterConfigSchema, InstanceOptionsSchema, parseClusterConfig, defaultClusterConfig, describeZodError } from './config.js';
export type { ClusterConfig, InstanceOptions } from './config.js';
export type { InstanceRecord } from '@parley/contracts';
