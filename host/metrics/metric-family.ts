/**
 * One metric of the Prometheus text exposition (format 0.0.4), written row by row so that a
 * scrape can stop between rows and let the event loop run (scrape-in-turns.ts). A row is what a
 * family has one or a few samples for: a device, an MQTT session, a histogram series.
 */
export interface MetricFamily<Context> {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  /** Starts this family's part of a scrape: how many rows it has now, and how to write row `i`. */
  begin(context: Context): { readonly rows: number; write(i: number, out: ExpositionBuffer): void };
}

/** The exposition text being built, in chunks taken by the writer. */
export class ExpositionBuffer {
  private text = '';

  get length(): number {
    return this.text.length;
  }

  /** `name{labels} value`; `labels` is already in exposition form (labelPair, joined by commas). */
  sample(name: string, labels: string, value: number): void {
    this.text += labels === '' ? `${name} ${formatValue(value)}\n` : `${name}{${labels}} ${formatValue(value)}\n`;
  }

  header(family: { name: string; help: string; type: string }): void {
    this.text += `# HELP ${family.name} ${escapeText(family.help)}\n# TYPE ${family.name} ${family.type}\n`;
  }

  /** The blank line between two families (as prom-client writes it). */
  separator(): void {
    this.text += '\n';
  }

  take(): string {
    const text = this.text;
    this.text = '';
    return text;
  }
}

/** `name="value"` with the value escaped (backslash, double quote, newline: the format's rules). */
export function labelPair(name: string, value: string): string {
  return `${name}="${escapeText(value).replace(/"/g, '\\"')}"`;
}

function escapeText(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Prometheus spells the non-finite values NaN, +Inf and -Inf. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return `${value}`;
}
