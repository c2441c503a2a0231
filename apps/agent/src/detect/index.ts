export {
  detect,
  DETECT_DEFAULTS,
  identifyPort,
  MOONRAKER_PATHS,
  propose,
  type Detection,
  type DetectOptions,
  type Finding,
  type FindingKind,
  type Proposal,
  type ProposedRoute,
  type ProposedService,
} from './detect.js';
