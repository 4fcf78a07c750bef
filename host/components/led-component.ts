import type five from 'johnny-five';
import type { z } from 'zod';
import type { ledSchema } from '../config/config-schema.ts';
import type { HomieNode } from '../homie/homie-description.ts';
import type { SetValue } from '../homie/set-payload.ts';
import type { ComponentContext, DeviceComponent } from './device-component.ts';

export class LedComponent implements DeviceComponent {
  readonly id: string;
  readonly node: HomieNode;
  private led: five.Led | null = null;
  private context: ComponentContext | null = null;
  private on = false;

  constructor(private readonly settings: z.infer<typeof ledSchema>) {
    this.id = settings.id;
    this.node = {
      name: settings.name ?? `LED on pin ${settings.pin}`,
      type: 'led',
      properties: { on: { name: 'On', datatype: 'boolean', settable: true, retained: true } },
    };
  }

  attach(context: ComponentContext): void {
    this.context = context;
    this.led = new context.five.Led({ pin: this.settings.pin, board: context.board });
    this.apply(); // a /set that came before the board was ready takes effect now
  }

  set(property: string, value: SetValue): void {
    if (property !== 'on') return;
    this.on = value === true;
    this.apply();
  }

  private apply(): void {
    if (!this.led || !this.context) return;
    if (this.on) this.led.on();
    else this.led.off();
    this.context.publish('on', String(this.on), 'state');
  }

  values(): Array<[string, string]> {
    return [['on', String(this.on)]];
  }
}
