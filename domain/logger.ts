/**
 * One pino root logger; components take a child. Secrets are redacted wherever they appear.
 *
 * Output: one JSON object per line (what log collectors read), or, on a terminal, one readable line
 * per record (`HH:MM:SS level component: message key=value …`) from the small formatter below
 * (pino-pretty is not a dependency). `LOG_FORMAT` (auto | json | pretty) chooses; auto is pretty
 * when the destination is a TTY.
 */
import tty from 'node:tty';
import { pino, type DestinationStream, type Logger } from 'pino';
import { redactUrl } from './config.ts';

export type { Logger };

export type LogFormat = 'auto' | 'json' | 'pretty';

const REDACT = [
  'password',
  'secret',
  'key',
  'token',
  'privateKey',
  '*.password',
  '*.secret',
  '*.key',
  '*.token',
  '*.privateKey',
  'req.headers.authorization',
];

/** A string that may be a URL carrying credentials (cheap test before parsing). */
const URL_WITH_PARTS = /:\/\/[^\s]*[@?/]/;

function scrub(v: unknown): unknown {
  return typeof v === 'string' && URL_WITH_PARTS.test(v) ? redactUrl(v) : v;
}

/**
 * Credentials embedded in URLs (`user:password@`, `?token=`, key-like path segments) are redacted in
 * every logged field and one level below (e.g. `{ config: { CHAIN_RPC_URL } }`), whatever its name.
 */
function redactUrls(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(obj)) {
    let w: unknown = scrub(v);
    if (w === v && v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Error)) {
      let inner: Record<string, unknown> | undefined;
      for (const [ik, iv] of Object.entries(v as Record<string, unknown>)) {
        const s = scrub(iv);
        if (s !== iv) (inner ??= { ...(v as Record<string, unknown>) })[ik] = s;
      }
      if (inner) w = inner;
    }
    if (w !== v) (out ??= { ...obj })[k] = w;
  }
  return out ?? obj;
}

/**
 * pino appends a child's bindings to its parent's, so `child({ component })` under a logger that
 * already names a component printed the key twice (`"component":"chain","component":"anvil"`): the
 * entry points name each part (`logger.child({ component: 'chain' })`) and the factories name
 * themselves again. Children made from this logger keep the first name and drop the later one, so
 * every line carries `component` once: the name the composition gave the part.
 * Children inherit this `child` (pino makes them with `Object.create(parent)`).
 */
function oneComponent(root: Logger): Logger {
  type Child = (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  const child = root.child as unknown as Child;
  const once: Child = function (this, bindings, options) {
    if (bindings && Object.hasOwn(bindings, 'component') && this.bindings().component !== undefined) {
      const { component: _dropped, ...rest } = bindings;
      return child.call(this, rest, options);
    }
    return child.call(this, bindings, options);
  };
  root.child = once as unknown as Logger['child'];
  return root;
}

/**
 * The same rule for a log call on a named logger that names a component again
 * (`log.info({ component: 'x' }, …)`): the logger's own name stays, the object's is dropped.
 */
function logMethod(this: Logger, args: Parameters<pino.LogFn>, method: pino.LogFn): void {
  const first = args[0] as unknown;
  if (first !== null && typeof first === 'object' && Object.hasOwn(first, 'component') && this.bindings().component !== undefined) {
    const { component: _dropped, ...rest } = first as Record<string, unknown>;
    args = [rest, ...args.slice(1)] as unknown as Parameters<pino.LogFn>;
  }
  method.apply(this, args);
}

/** The format `auto` resolves to for a destination that is (or is not) a terminal. */
export function chooseFormat(format: LogFormat | string, isTTY: boolean): 'json' | 'pretty' {
  return format === 'json' || format === 'pretty' ? format : isTTY ? 'pretty' : 'json';
}

/** Whether a pino destination writes to a terminal (stdout when none is given; a SonicBoom has `fd`). */
function destinationIsTTY(destination?: DestinationStream): boolean {
  const fd = destination === undefined ? 1 : (destination as { fd?: unknown }).fd;
  return typeof fd === 'number' && tty.isatty(fd);
}

/**
 * The root logger. `destination` defaults to stdout; a CLI that prints results on stdout logs to
 * stderr (`pino.destination(2)`). `format` is `config.logFormat` (LOG_FORMAT: auto, json, pretty).
 */
export function createLogger(level = 'info', destination?: DestinationStream, format: LogFormat | string = 'auto'): Logger {
  const options = { level, redact: { paths: REDACT, censor: '[redacted]' }, base: undefined, formatters: { log: redactUrls }, hooks: { logMethod } };
  const isTTY = destinationIsTTY(destination);
  if (chooseFormat(format, isTTY) === 'pretty') {
    const out = destination ?? process.stdout;
    const color = isTTY && !process.env.NO_COLOR;
    return oneComponent(pino(options, prettyStream(out, { color })));
  }
  // stdout is written synchronously: pino's default asynchronous writer, at `process.exit`, writes
  // what is queued at once while a write already handed to libuv's thread pool may land after it (a
  // shutdown's `anvil stopped` printed after the `stopped: …` summary); `flush()` cannot wait for it.
  // Lines are few (rejections are aggregated), so a blocking write costs nothing measurable.
  return oneComponent(pino(options, destination ?? pino.destination({ dest: 1, sync: true })));
}

/** A logger that prints nothing (tests). */
export const silentLogger: Logger = oneComponent(pino({ level: 'silent', hooks: { logMethod } }));

// ---------------------------------------------------------------------------------------------------
// Readable lines for a terminal.

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const COLORS: Record<number, string> = { 10: '\x1b[90m', 20: '\x1b[36m', 30: '\x1b[32m', 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[35m' };
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';

export interface PrettyOptions {
  /** ANSI colours for the level (default false). */
  color?: boolean;
}

/** A pino destination that turns each JSON line into a readable one and writes it to `out`. */
export function prettyStream(out: { write(s: string): unknown }, opts: PrettyOptions = {}): DestinationStream {
  return { write: (line: string) => void out.write(prettyLine(line, opts)) };
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** A value as `key=value` shows it: plain when unambiguous, JSON otherwise. */
function shownValue(v: unknown): string {
  if (typeof v === 'string') return v !== '' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * One pino JSON line as `HH:MM:SS level component: message key=value …` (local time), with an error's
 * stack on the lines below for error and fatal. A line that is not JSON is passed through.
 */
export function prettyLine(line: string, opts: PrettyOptions = {}): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  if (rec === null || typeof rec !== 'object') return line.endsWith('\n') ? line : `${line}\n`;
  const { level, time, msg, component, err, ...rest } = rec;
  const num = typeof level === 'number' ? level : 30;
  const d = new Date(typeof time === 'number' ? time : Date.now());
  const clock = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  const name = (LEVELS[num] ?? String(level)).padEnd(5);
  let out = `${opts.color ? DIM : ''}${clock}${opts.color ? RESET : ''} ${opts.color ? `${COLORS[num] ?? ''}${name}${RESET}` : name}`;
  if (component !== undefined) out += ` ${String(component)}:`;
  if (msg !== undefined && msg !== '') out += ` ${String(msg)}`;
  let stack: string | undefined;
  if (err !== undefined) {
    const e = err as { message?: unknown; stack?: unknown };
    out += ` err=${shownValue(e !== null && typeof e === 'object' && typeof e.message === 'string' ? e.message : err)}`;
    if (num >= 50 && e !== null && typeof e === 'object' && typeof e.stack === 'string') stack = e.stack;
  }
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) out += ` ${k}=${shownValue(v)}`;
  out += '\n';
  if (stack) out += `${stack.replace(/^/gm, '    ')}\n`;
  return out;
}
