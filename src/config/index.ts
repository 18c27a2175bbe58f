/** Public surface of the config layer: loaders, types, and the error they throw. */
export { ConfigError, formatIssue, type ConfigIssue } from './config-error.js';
export { loadAgentConfig, loadGatewayConfig, parseAgentConfig, parseGatewayConfig } from './load.js';
export type { AgentConfig, GatewayConfig, PolicyEntry, WorkloadEntry } from './schema.js';
export { LOG_LEVELS, MODES, POLICY_PROTOCOLS } from './schema.js';
export type { HostPort, PortRange } from './values.js';
export { compilePolicy, CompiledPolicy, IdentityPolicy, type PolicyPacketView } from './policy.js';
