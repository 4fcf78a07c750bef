// Arduino Uno (ATmega328P) layout as seen through Firmata.
#pragma once
#include <stdint.h>

#define TETHER_PIN_COUNT 20      // D0-D13 = 0-13, A0-A5 = 14-19
#define TETHER_PORT_COUNT 3      // Firmata ports of 8 pins
#define TETHER_ANALOG_COUNT 6
#define TETHER_FIRST_ANALOG_PIN 14
#define TETHER_STATE_SIZE 32     // keepalive state registers

// Test variant without the keepalive extension (build.sh --plain-firmata): a board
// that speaks only Firmata and behaves at boot like one running StandardFirmata.
#ifndef TETHER_PLAIN_FIRMATA
#define TETHER_PLAIN_FIRMATA 0
#endif

#if TETHER_PLAIN_FIRMATA
#define TETHER_FW_MAJOR 2  // as StandardFirmata 2.5 reports itself
#define TETHER_FW_MINOR 5
#define TETHER_FW_NAME "plain-firmata"
#else
#define TETHER_FW_MAJOR 1
#define TETHER_FW_MINOR 0
#define TETHER_FW_NAME "tether"  // Firmata REPORT_FIRMWARE and keepalive HELLO
#endif

// D0/D1 carry the Firmata link itself and must never be reconfigured.
static inline bool board_pin_usable(uint8_t pin) { return pin >= 2 && pin < TETHER_PIN_COUNT; }
static inline bool board_pin_is_analog(uint8_t pin) { return pin >= TETHER_FIRST_ANALOG_PIN && pin < TETHER_PIN_COUNT; }
static inline bool board_pin_is_pwm(uint8_t pin) {
  return pin == 3 || pin == 5 || pin == 6 || pin == 9 || pin == 10 || pin == 11;
}

