/**
 * Small helpers for tests and benchmarks that start real servers on this machine: a free loopback
 * port, waiting for a TCP listener, and Debian's mosquitto on its own config and port. The code lives
 * in cluster/servers.ts (`npm run start:cluster` starts the same servers).
 */
export { MOSQUITTO, freePort, waitForPort, startMosquitto, type Mosquitto } from '../../cluster/servers.ts';
