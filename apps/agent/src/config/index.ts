export {
  CONFIG_DEFAULTS,
  LOG_LEVELS,
  MAX_ROUTES,
  MAX_SERVICES,
  helloFor,
  parseRelayUrl,
  parseServiceUrl,
  type AgentConfig,
  type LogLevel,
  type RouteConfig,
  type ServiceConfig,
} from './schema.js';
export { ConfigError, ENV_OVERRIDES, deepFreeze, loadConfig, parseConfig, readCa } from './load.js';
export { isLanAddress, isLanHost, isLanHostname, lanOnlyLookup } from './lan.js';
