import type five from 'johnny-five';
import type { HomieNode } from '../homie/homie-description.ts';
import type { SetValue } from '../homie/set-payload.ts';

export type PublishKind = 'state' | 'telemetry';

export interface ComponentContext {
  /**
   * Johnny-Five itself, loaded by the gateway only for a board with components: importing it
   * loads Node's `repl` and with it `domain`, which wraps every EventEmitter's construction and
   * emit in the whole process (~1 µs per new emitter instead of ~0.15; issue 15).
   */
  five: typeof five;
  board: five.Board;
  /** Publishes a property value of this component's node (retained). */
  publish(property: string, value: string, kind: PublishKind): void;
}

/**
 * A Johnny-Five component on a device, seen as a Homie node: it says which properties it
 * has, publishes their values, and applies validated /set values.
 */
export interface DeviceComponent {
  readonly id: string;
  readonly node: HomieNode;
  /** Creates the Johnny-Five component once the board is ready. */
  attach(context: ComponentContext): void;
  /** Applies a value already validated against the property's schema. */
  set(property: string, value: SetValue): void;
  /** Current values, republished after a broker reconnect. */
  values(): Array<[property: string, value: string]>;
}
