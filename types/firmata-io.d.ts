// firmata-io ships no types; the parts tether uses.
declare module 'firmata-io' {
  import { EventEmitter } from 'node:events';
  export class Firmata extends EventEmitter {
    constructor(transport: unknown, options?: Record<string, unknown>);
    isReady: boolean;
    pins: Array<{ mode: number | null; value: number; supportedModes: number[]; analogChannel: number }>;
    sysexResponse(commandByte: number, handler: (data: number[]) => void): this;
    sysexCommand(message: number[]): this;
    reset(callback?: () => void): void;
  }
  const bindTransport: ((transport: unknown) => typeof Firmata) & { Firmata: typeof Firmata };
  export default bindTransport;
}
