import type five from 'johnny-five';
import type { z } from 'zod';
import type { sensorSchema } from '../config/config-schema.ts';
import type { HomieNode } from '../homie/homie-description.ts';
import type { ComponentContext, DeviceComponent } from './device-component.ts';

export class SensorComponent implements DeviceComponent {
  readonly id: string;
  readonly node: HomieNode;
  private value: number | null = null;

  constructor(private readonly settings: z.infer<typeof sensorSchema>) {
    this.id = settings.id;
    this.node = {
      name: settings.name ?? `Sensor on ${settings.pin}`,
      type: 'sensor',
      properties: { value: { name: 'Value', datatype: 'integer', format: '0:1023', settable: false, retained: true } },
    };
  }

  attach(context: ComponentContext): void {
    const pin = typeof this.settings.pin === 'number' ? `A${this.settings.pin - 14}` : this.settings.pin;
    const sensor = new context.five.Sensor({ pin, board: context.board, freq: this.settings.freq, threshold: this.settings.threshold });
    // The value the change event carries (the filtered reading that crossed the threshold), not
    // sensor.value: that is the newest raw sample, which may already be the next reading (then
    // that one is published twice and this one never). @types/johnny-five omits the argument.
    (sensor as unknown as NodeJS.EventEmitter).on('change', (value: number) => {
      this.value = value;
      context.publish('value', String(value), 'telemetry');
    });
  }

  set(): void {
    // Not settable.
  }

  values(): Array<[string, string]> {
    return this.value === null ? [] : [['value', String(this.value)]];
  }
}
