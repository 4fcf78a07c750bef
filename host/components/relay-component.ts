import type five from 'johnny-five';
import type { z } from 'zod';
import type { relaySchema } from '../config/config-schema.ts';
import type { HomieNode } from '../homie/homie-description.ts';
import type { SetValue } from '../homie/set-payload.ts';
import type { ComponentContext, DeviceComponent } from './device-component.ts';

export class RelayComponent implements DeviceComponent {
  readonly id: string;
  readonly node: HomieNode;
  private relay: five.Relay | null = null;
  private context: ComponentContext | null = null;
  private closed = false;

  constructor(private readonly settings: z.infer<typeof relaySchema>) {
    this.id = settings.id;
    this.node = {
      name: settings.name ?? `Relay on pin ${settings.pin}`,
      type: 'relay',
      properties: { closed: { name: 'Closed', datatype: 'boolean', settable: true, retained: true } },
    };
  }

  attach(context: ComponentContext): void {
    this.context = context;
    this.relay = new context.five.Relay({ pin: this.settings.pin, type: this.settings.normally === 'open' ? 'NO' : 'NC', board: context.board });
    this.apply(); // a /set that came before the board was ready takes effect now
  }

  set(property: string, value: SetValue): void {
    if (property !== 'closed') return;
    this.closed = value === true;
    this.apply();
  }

  private apply(): void {
    if (!this.relay || !this.context) return;
    if (this.closed) this.relay.close();
    else this.relay.open();
    this.context.publish('closed', String(this.closed), 'state');
  }

  values(): Array<[string, string]> {
    return [['closed', String(this.closed)]];
  }
}
