// tether keepalive extension (sysex 0x0D): HELLO, PING/PONG with lease and
// host-loss detection, BEATS/BEAT (the device's own heartbeat), state registers,
// configuration, errors, and the decision to sleep.
#pragma once
#include <stdint.h>

#define HELLO_FLAG_STATE_SURVIVED 0x01
#define HELLO_FLAG_PINS_RESTORED 0x02
#define HELLO_FLAG_REPLY 0x04

void keepalive_begin(uint8_t reset_cause, uint8_t boot_flags);
void keepalive_send_hello(bool reply);
void keepalive_note_rx();  // a received command counts as activity (defers sleep)
bool keepalive_is_ping(const uint8_t *body, uint8_t length);  // sysex body is a keepalive PING or BEATS
// body = sysex body starting with the 0x0D id, length >= 1.
void keepalive_handle_frame(const uint8_t *body, uint8_t length);
// Once per main-loop pass: host loss, lease expiry, watchdog kick, sleep, the next BEAT.
void keepalive_poll();
