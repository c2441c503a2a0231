export { ExitCode, Supervisor, SUPERVISOR_DEFAULTS, type Dialer, type SupervisorEvents, type SupervisorOptions } from './supervisor.js';
export { Mailbox } from './mailbox.js';
