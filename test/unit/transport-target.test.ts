import { describe, expect, it } from 'vitest';
import { createTransport, parseTarget } from '../../host/transport/create-transport.ts';
import { SerialTransport } from '../../host/transport/serial-transport.ts';
import { TcpTransport } from '../../host/transport/tcp-transport.ts';
import { TransportError } from '../../host/transport/transport.ts';

function invalid(fn: () => unknown): TransportError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).code).toBe('invalid');
    return err as TransportError;
  }
  throw new Error('expected a TransportError');
}

describe('parseTarget', () => {
  it.each([
    ['tcp://10.0.0.5:2000', { kind: 'tcp', host: '10.0.0.5', port: 2000 }],
    ['tcp://esp-link.local:23', { kind: 'tcp', host: 'esp-link.local', port: 23 }],
    ['TCP://Bridge:1', { kind: 'tcp', host: 'Bridge', port: 1 }],
    ['tcp://localhost:65535', { kind: 'tcp', host: 'localhost', port: 65535 }],
    ['tcp://[::1]:2000', { kind: 'tcp', host: '::1', port: 2000 }],
    ['tcp://[fe80::1%eth0]:2000', { kind: 'tcp', host: 'fe80::1%eth0', port: 2000 }],
    ['tcp://my_host.lan.:4000', { kind: 'tcp', host: 'my_host.lan.', port: 4000 }],
  ])('%s is a TCP bridge', (target, expected) => {
    expect(parseTarget(target)).toEqual(expected);
  });

  it.each(['/dev/ttyACM0', '/dev/serial/by-id/usb-Arduino__www.arduino.cc__0043_7583-if00', 'COM3', '\\\\.\\COM12', 'ttyUSB0'])(
    '%s is a serial port',
    (target) => {
      expect(parseTarget(target)).toEqual({ kind: 'serial', path: target });
    },
  );

  it.each([
    ['', /target is empty/],
    ['   ', /target is empty/],
    ['tcp://', /port is missing/],
    ['tcp://host', /port is missing/],
    ['tcp://host:', /port is missing/],
    ['tcp://:2000', /host is missing/],
    ['tcp://host:0', /port 0 is out of range 1-65535/],
    ['tcp://host:65536', /port 65536 is out of range 1-65535/],
    ['tcp://host:99999', /out of range/],
    ['tcp://host:123456', /port "123456" is not a number from 1 to 65535/],
    ['tcp://host:-1', /port "-1" is not a number/],
    ['tcp://host:20a', /port "20a" is not a number/],
    ['tcp://host:2000/path', /no path/],
    ['tcp://user@host:2000', /no path, user/],
    ['tcp://ho st:2000', /no path, user or spaces/],
    ['tcp://host!:2000', /"host!" is not a valid host name/],
    ['tcp://-host:2000', /not a valid host name/],
    ['tcp://a..b:2000', /not a valid host name/],
    ['tcp://999.1.1.1:2000', /"999.1.1.1" is not an IPv4 address/],
    ['tcp://1.2.3:2000', /not an IPv4 address/],
    ['tcp://::1:2000', /IPv6 address needs brackets/],
    ['tcp://[::1]', /port is missing/],
    ['tcp://[::1:2000', /unclosed "\["/],
    ['tcp://[nope]:2000', /"nope" is not an IPv6 address/],
    ['udp://host:2000', /scheme "udp" is not supported/],
    ['rfc2217://host:2000', /scheme "rfc2217" is not supported/],
    [' /dev/ttyACM0', /leading or trailing spaces/],
  ])('rejects %j', (target, message) => {
    const err = invalid(() => parseTarget(target));
    expect(err.message).toMatch(message);
    if (target.trim() !== '' && !/^\s/.test(target)) expect(err.message).toContain(target);
  });
});

describe('createTransport', () => {
  it('makes a TcpTransport for tcp:// targets, not yet connected', () => {
    const t = createTransport('tcp://127.0.0.1:2000');
    expect(t).toBeInstanceOf(TcpTransport);
    expect(t.description).toBe('tcp://127.0.0.1:2000');
    expect(t.isOpen).toBe(false);
    expect(createTransport('tcp://[::1]:23').description).toBe('tcp://[::1]:23');
  });

  it('makes a SerialTransport for anything else, with the default or given baud rate', () => {
    const t = createTransport('/dev/ttyACM0');
    expect(t).toBeInstanceOf(SerialTransport);
    expect(t.description).toBe('/dev/ttyACM0 @ 57600 baud');
    expect(createTransport('/dev/ttyUSB1', { baudRate: 115200 }).description).toBe('/dev/ttyUSB1 @ 115200 baud');
  });

  it('rejects a bad target or bad options with TransportError invalid', () => {
    expect(invalid(() => createTransport('tcp://host:70000')).message).toMatch(/out of range/);
    expect(invalid(() => createTransport('/dev/ttyACM0', { baudRate: 0 })).message).toMatch(
      /baud rate for \/dev\/ttyACM0 must be a positive integer, got 0/,
    );
    expect(invalid(() => createTransport('/dev/ttyACM0', { baudRate: 9600.5 })).message).toMatch(/positive integer/);
    expect(invalid(() => createTransport('tcp://h:1', { connectTimeoutMs: 0 })).message).toMatch(/connectTimeoutMs must be/);
    expect(invalid(() => createTransport('tcp://h:1', { keepAliveInitialDelayMs: -1 })).message).toMatch(
      /keepAliveInitialDelayMs must be/,
    );
  });
});
