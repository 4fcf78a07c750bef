import { describe, expect, it } from 'vitest';
import { serialErrorToTransportError } from '../../host/transport/serial-transport.ts';
import { tcpErrorToTransportError } from '../../host/transport/tcp-transport.ts';

const errno = (code: string, message = code) => Object.assign(new Error(message), { code });

describe('serial OS errors -> TransportError codes', () => {
  // The first messages are serialport 13's own texts on Linux (no errno code attached).
  it.each([
    [new Error('Error: No such file or directory, cannot open /dev/ttyACM0'), 'not-found'],
    [errno('ENOENT'), 'not-found'],
    [errno('ENXIO', 'No such device or address'), 'not-found'],
    [new Error('Error Resource temporarily unavailable Cannot lock port'), 'busy'],
    [errno('EBUSY', 'Device or resource busy'), 'busy'],
    [new Error('Error: Permission denied, cannot open /dev/ttyACM0'), 'permission'],
    [errno('EACCES'), 'permission'],
    [new Error('Error: Inappropriate ioctl for device setting custom baud rate of 57600'), 'io'],
    ['a string', 'io'],
  ])('%s -> %s', (err, code) => {
    const mapped = serialErrorToTransportError('/dev/ttyACM0', err);
    expect(mapped.code).toBe(code);
    expect(mapped.message).toContain('/dev/ttyACM0');
    expect(mapped.cause).toBe(err);
  });

  it('says what to do', () => {
    expect(serialErrorToTransportError('/dev/x', errno('EACCES')).message).toMatch(/dialout/);
    expect(serialErrorToTransportError('/dev/x', errno('EBUSY')).message).toMatch(/another program/);
    expect(serialErrorToTransportError('/dev/x', errno('ENOENT')).message).toMatch(/plugged in/);
  });
});

describe('TCP connect errors -> TransportError codes', () => {
  it.each([
    ['ECONNREFUSED', 'refused'],
    ['ENOTFOUND', 'not-found'],
    ['EAI_AGAIN', 'not-found'],
    ['ETIMEDOUT', 'timeout'],
    ['EACCES', 'permission'],
    ['EHOSTUNREACH', 'io'],
  ])('%s -> %s', (code, expected) => {
    const mapped = tcpErrorToTransportError('tcp://h:1', errno(code));
    expect(mapped.code).toBe(expected);
    expect(mapped.message).toMatch(/^tcp:\/\/h:1: /);
  });

  it("reads the code inside Node's happy-eyeballs AggregateError", () => {
    const agg = new AggregateError([errno('ECONNREFUSED'), errno('ECONNREFUSED')], '');
    expect(tcpErrorToTransportError('tcp://localhost:1', agg).code).toBe('refused');
  });
});
