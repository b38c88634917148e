/** Errors the simulators raise on purpose: declared in the catalogue (domain/errors.ts). */
export { simErrors } from '../domain/errors.ts';
