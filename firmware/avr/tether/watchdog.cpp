#include "watchdog.h"
#include <avr/pgmspace.h>
#include <avr/wdt.h>

// Index = the WDTO_* prescaler value of avr/wdt.h.
static const uint16_t periods_ms[] PROGMEM = {15, 30, 60, 120, 250, 500, 1000, 2000, 4000, 8000};
static bool suspended;

static int8_t period_index(uint16_t ms) {
  int8_t index = -1;
  for (uint8_t i = 0; i < sizeof periods_ms / sizeof periods_ms[0]; i++) {
    if (ms >= pgm_read_word(&periods_ms[i])) index = i;
  }
  return index;
}

uint16_t watchdog_round_ms(uint16_t ms) {
  int8_t index = period_index(ms);
  return index < 0 ? 0 : pgm_read_word(&periods_ms[index]);
}

void watchdog_arm(uint16_t ms) {
  int8_t index = period_index(ms);
  if (index < 0) {
    wdt_disable();
  } else {
    wdt_enable((uint8_t)index);
  }
}

void watchdog_kick() {
  if (!suspended) wdt_reset();
}

void watchdog_set_suspended(bool value) { suspended = value; }
