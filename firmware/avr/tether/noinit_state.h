// State kept in the .noinit RAM section: the C runtime does not clear it, so
// it survives a watchdog or external reset (but not a power cycle).
#pragma once
#include <stdint.h>
#include "board.h"

struct NoinitState {
  uint16_t magic;
  uint8_t pin_mode[TETHER_PIN_COUNT];   // Firmata mode per pin
  uint8_t pin_value[TETHER_PIN_COUNT];  // output level, PWM duty or pullup flag
  uint8_t report_digital;               // bit n = Firmata port n reported
  uint8_t report_analog;                // bit n = analog channel n reported
  uint16_t sampling_interval_ms;
  uint8_t registers[TETHER_STATE_SIZE];
  uint16_t crc;                         // CRC-16 of everything above; keep last
};

extern NoinitState g_noinit;

bool noinit_valid();
void noinit_clear();   // fresh block: zero registers, no pins configured yet
void noinit_commit();  // call after every change so the block stays valid
