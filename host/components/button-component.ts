import type five from 'johnny-five';
import type { z } from 'zod';
import type { buttonSchema } from '../config/config-schema.ts';
import type { HomieNode } from '../homie/homie-description.ts';
import type { ComponentContext, DeviceComponent } from './device-component.ts';

export class ButtonComponent implements DeviceComponent {
  readonly id: string;
  readonly node: HomieNode;
  private pressed = false;

  constructor(private readonly settings: z.infer<typeof buttonSchema>) {
    this.id = settings.id;
    this.node = {
      name: settings.name ?? `Button on pin ${settings.pin}`,
      type: 'button',
      properties: { pressed: { name: 'Pressed', datatype: 'boolean', settable: false, retained: true } },
    };
  }

  attach(context: ComponentContext): void {
    const button = new context.five.Button({ pin: this.settings.pin, board: context.board, isPullup: this.settings.pullup, invert: this.settings.invert });
    const update = (pressed: boolean) => {
      this.pressed = pressed;
      context.publish('pressed', String(pressed), 'state');
    };
    button.on('press', () => update(true));
    button.on('release', () => update(false));
    context.publish('pressed', String(this.pressed), 'state');
  }

  set(): void {
    // Not settable: /set is rejected before it gets here.
  }

  values(): Array<[string, string]> {
    return [['pressed', String(this.pressed)]];
  }
}
