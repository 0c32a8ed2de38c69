/**
 * One line per event on stderr. Under systemd (JOURNAL_STREAM set) each line gets the
 * sd-daemon priority prefix so journald keeps levels. Callers pass references, paths and
 * names here — never secret values.
 */
export type Level = "error" | "warn" | "info" | "debug";

const priority: Record<Level, number> = { error: 3, warn: 4, info: 6, debug: 7 };

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

export interface LoggerOptions {
  verbose?: boolean;
  journal?: boolean;
  write?: (line: string) => void;
  prefix?: string;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const journal = options.journal ?? Boolean(process.env["JOURNAL_STREAM"]);
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const prefix = options.prefix ?? "homelab-secrets";
  const emit = (level: Level, message: string) => {
    if (level === "debug" && !options.verbose) return;
    // One event, one line: a newline inside a message would forge a second journal entry.
    const text = message.replace(/[\r\n]+/g, " ");
    const head = journal ? `<${priority[level]}>` : "";
    const tag = journal ? "" : `${prefix}: ${level === "info" ? "" : `${level}: `}`;
    write(`${head}${tag}${text}\n`);
  };
  return {
    error: (m) => emit("error", m),
    warn: (m) => emit("warn", m),
    info: (m) => emit("info", m),
    debug: (m) => emit("debug", m),
  };
}

export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };

/**
 * Replace control characters (C0 and DEL) in text bound for a message, so a name or a
 * server's reply cannot move the cursor, ring the bell or forge a line.
 */
export function replaceControl(text: string, by: string | ((c: string) => string)): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const control = /[\u0000-\u001f\u007f]/g;
  return typeof by === "string" ? text.replace(control, by) : text.replace(control, by);
}
