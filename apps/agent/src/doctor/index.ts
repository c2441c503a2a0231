export { CHECK_HEADER, plainTlsError, runDoctor, type CheckResult, type CheckSection, type CheckStatus, type DoctorOptions } from './doctor.js';
