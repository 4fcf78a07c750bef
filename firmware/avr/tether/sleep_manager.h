// Power-down sleep, woken by the watchdog interrupt (which also counts the
// time asleep, since timer 0 is stopped) or by a level change on RX (PD0).
#pragma once
#include <stdint.h>

#define WAKE_TIMER 0x01
#define WAKE_SERIAL 0x02
#define WAKE_PIN_CHANGE 0x04

// The "250 ms" watchdog period is 32768 cycles of the nominal 128 kHz
// watchdog oscillator, i.e. 256 ms; counting 256 keeps millis() closer.
#define SLEEP_CHUNK_MS 256

struct SleepResult {
  uint32_t slept_ms;
  uint8_t wake_cause;
};

// Sleeps until RX activity or max_ms has passed (max_ms 0: until RX activity),
// then re-arms the watchdog in reset mode with watchdog_ms and advances millis()
// by the time slept.
SleepResult sleep_manager_sleep(uint32_t max_ms, uint16_t watchdog_ms);
