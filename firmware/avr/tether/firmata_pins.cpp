#include "firmata_pins.h"
#include <Arduino.h>
#include "board.h"
#include "firmata_constants.h"
#include "noinit_state.h"
#include "serial_link.h"

// Internal mode of a digital pin nobody has configured since power-on or
// SYSTEM_RESET: high-Z like INPUT (and reported as INPUT), but not reported
// as an input, and a write of 1 turns it into an OUTPUT. StandardFirmata
// instead starts such pins as OUTPUT low; Johnny-Five's Relay relies on that
// (it writes without setting a mode), and this keeps it working without
// driving any pin before the host asks.
#define MODE_UNCLAIMED 0x7E

static uint8_t last_port_value[TETHER_PORT_COUNT];
static uint32_t last_sample_ms;

static bool is_input_mode(uint8_t mode) { return mode == FIRMATA_MODE_INPUT || mode == FIRMATA_MODE_PULLUP; }

// Drives the hardware from g_noinit for one pin. For outputs the level is
// set before the direction so a restored HIGH output never glitches low.
static void apply_pin(uint8_t pin) {
  uint8_t value = g_noinit.pin_value[pin];
  switch (g_noinit.pin_mode[pin]) {
    case FIRMATA_MODE_OUTPUT:
      digitalWrite(pin, value ? HIGH : LOW);
      pinMode(pin, OUTPUT);
      break;
    case FIRMATA_MODE_PWM:
      pinMode(pin, OUTPUT);
      analogWrite(pin, value);
      break;
    case FIRMATA_MODE_INPUT:
      pinMode(pin, value ? INPUT_PULLUP : INPUT);
      break;
    case FIRMATA_MODE_PULLUP:
      pinMode(pin, INPUT_PULLUP);
      break;
    case FIRMATA_MODE_ANALOG:
    case MODE_UNCLAIMED:
      pinMode(pin, INPUT);  // also turns the pull-up off
      break;
    default:
      break;  // D0/D1 (IGNORE) belong to the UART
  }
}

static uint8_t read_port_inputs(uint8_t port) {
  uint8_t bits = 0;
  for (uint8_t i = 0; i < 8; i++) {
    uint8_t pin = port * 8 + i;
    if (pin >= TETHER_PIN_COUNT) break;
    if (is_input_mode(g_noinit.pin_mode[pin]) && digitalRead(pin) == HIGH) bits |= 1 << i;
  }
  return bits;
}

static void send_port(uint8_t port, uint8_t bits) {
  serial_link_write(FIRMATA_DIGITAL_MESSAGE | port);
  serial_link_write_septets(bits);
}

static void send_analog(uint8_t channel) {
  uint16_t value = analogRead(channel);
  serial_link_write(FIRMATA_ANALOG_MESSAGE | channel);
  serial_link_write_septets(value);
}

void pins_reset_to_defaults() {
  for (uint8_t pin = 0; pin < TETHER_PIN_COUNT; pin++) {
    if (board_pin_usable(pin)) {
      // Analog-capable pins in ANALOG, as StandardFirmata (firmata.js starts
      // analog reads without sending SET_PIN_MODE); the rest unclaimed.
      // The plain-Firmata test variant makes them LOW outputs, as StandardFirmata does.
      g_noinit.pin_mode[pin] = board_pin_is_analog(pin) ? FIRMATA_MODE_ANALOG
                               : TETHER_PLAIN_FIRMATA   ? FIRMATA_MODE_OUTPUT
                                                        : MODE_UNCLAIMED;
    } else {
      g_noinit.pin_mode[pin] = FIRMATA_MODE_IGNORE;
    }
    g_noinit.pin_value[pin] = 0;
  }
  g_noinit.report_digital = 0;
  g_noinit.report_analog = 0;
  g_noinit.sampling_interval_ms = FIRMATA_DEFAULT_SAMPLING_MS;
  noinit_commit();
  pins_restore();
}

void pins_restore() {
  for (uint8_t pin = 0; pin < TETHER_PIN_COUNT; pin++) apply_pin(pin);
  for (uint8_t port = 0; port < TETHER_PORT_COUNT; port++) last_port_value[port] = read_port_inputs(port);
}

void pins_set_mode(uint8_t pin, uint8_t mode) {
  if (!board_pin_usable(pin)) return;
  switch (mode) {
    case FIRMATA_MODE_INPUT:
    case FIRMATA_MODE_OUTPUT:
    case FIRMATA_MODE_PULLUP:
      break;
    case FIRMATA_MODE_ANALOG:
      if (!board_pin_is_analog(pin)) return;
      break;
    case FIRMATA_MODE_PWM:
      if (!board_pin_is_pwm(pin)) return;
      break;
    default:
      return;  // unsupported modes are ignored, as StandardFirmata does
  }
  uint8_t old_mode = g_noinit.pin_mode[pin];
  if (old_mode == FIRMATA_MODE_PWM && mode != FIRMATA_MODE_PWM) analogWrite(pin, 0);
  if (old_mode == FIRMATA_MODE_ANALOG && mode != FIRMATA_MODE_ANALOG) {
    g_noinit.report_analog &= ~(1 << (pin - TETHER_FIRST_ANALOG_PIN));
  }
  g_noinit.pin_mode[pin] = mode;
  g_noinit.pin_value[pin] = mode == FIRMATA_MODE_PULLUP ? 1 : 0;
  noinit_commit();
  apply_pin(pin);
}

void pins_write_port(uint8_t port, uint8_t bits) {
  if (port >= TETHER_PORT_COUNT) return;
  bool changed = false;
  for (uint8_t i = 0; i < 8; i++) {
    uint8_t pin = port * 8 + i;
    if (pin >= TETHER_PIN_COUNT) break;
    uint8_t mode = g_noinit.pin_mode[pin];
    uint8_t value = (bits >> i) & 1;
    // OUTPUT pins take the bit; on INPUT pins it switches the pull-up
    // (Firmata's backwards-compatible meaning); an unclaimed pin becomes an
    // OUTPUT only when set to 1, so writing a neighbour leaves it high-Z.
    // Other modes are untouched.
    if (mode == MODE_UNCLAIMED && value) {
      g_noinit.pin_mode[pin] = FIRMATA_MODE_OUTPUT;
    } else if (mode != FIRMATA_MODE_OUTPUT && mode != FIRMATA_MODE_INPUT) {
      continue;
    } else if (g_noinit.pin_value[pin] == value) {
      continue;
    }
    g_noinit.pin_value[pin] = value;
    apply_pin(pin);
    changed = true;
  }
  if (changed) noinit_commit();
}

void pins_write_digital(uint8_t pin, uint8_t value) {
  if (!board_pin_usable(pin)) return;
  if (g_noinit.pin_mode[pin] == MODE_UNCLAIMED) g_noinit.pin_mode[pin] = FIRMATA_MODE_OUTPUT;
  if (g_noinit.pin_mode[pin] != FIRMATA_MODE_OUTPUT) return;
  g_noinit.pin_value[pin] = value ? 1 : 0;
  noinit_commit();
  apply_pin(pin);
}

void pins_write_analog(uint8_t pin, uint16_t value) {
  if (!board_pin_usable(pin) || g_noinit.pin_mode[pin] != FIRMATA_MODE_PWM) return;
  g_noinit.pin_value[pin] = value > 255 ? 255 : (uint8_t)value;
  noinit_commit();
  apply_pin(pin);
}

void pins_report_digital(uint8_t port, bool enable) {
  if (port >= TETHER_PORT_COUNT) return;
  if (enable) {
    g_noinit.report_digital |= 1 << port;
    // Report at once so the host knows the inputs' present levels.
    last_port_value[port] = read_port_inputs(port);
    send_port(port, last_port_value[port]);
  } else {
    g_noinit.report_digital &= ~(1 << port);
  }
  noinit_commit();
}

void pins_report_analog(uint8_t channel, bool enable) {
  if (channel >= TETHER_ANALOG_COUNT) return;
  if (enable) {
    g_noinit.report_analog |= 1 << channel;
    if (g_noinit.pin_mode[TETHER_FIRST_ANALOG_PIN + channel] == FIRMATA_MODE_ANALOG) send_analog(channel);
  } else {
    g_noinit.report_analog &= ~(1 << channel);
  }
  noinit_commit();
}

void pins_set_sampling_interval(uint16_t ms) {
  g_noinit.sampling_interval_ms = ms ? ms : 1;
  noinit_commit();
}

void pins_send_capabilities() {
  serial_link_write(FIRMATA_START_SYSEX);
  serial_link_write(FIRMATA_CAPABILITY_RESPONSE);
  for (uint8_t pin = 0; pin < TETHER_PIN_COUNT; pin++) {
    if (board_pin_usable(pin)) {
      serial_link_write(FIRMATA_MODE_INPUT);
      serial_link_write(1);
      serial_link_write(FIRMATA_MODE_OUTPUT);
      serial_link_write(1);
      if (board_pin_is_analog(pin)) {
        serial_link_write(FIRMATA_MODE_ANALOG);
        serial_link_write(10);
      }
      if (board_pin_is_pwm(pin)) {
        serial_link_write(FIRMATA_MODE_PWM);
        serial_link_write(8);
      }
      serial_link_write(FIRMATA_MODE_PULLUP);
      serial_link_write(1);
    }
    serial_link_write(0x7F);
  }
  serial_link_write(FIRMATA_END_SYSEX);
}

void pins_send_analog_mapping() {
  serial_link_write(FIRMATA_START_SYSEX);
  serial_link_write(FIRMATA_ANALOG_MAPPING_RESPONSE);
  for (uint8_t pin = 0; pin < TETHER_PIN_COUNT; pin++) {
    serial_link_write(board_pin_is_analog(pin) ? pin - TETHER_FIRST_ANALOG_PIN : 0x7F);
  }
  serial_link_write(FIRMATA_END_SYSEX);
}

void pins_send_pin_state(uint8_t pin) {
  if (pin >= TETHER_PIN_COUNT) return;
  serial_link_write(FIRMATA_START_SYSEX);
  serial_link_write(FIRMATA_PIN_STATE_RESPONSE);
  serial_link_write(pin);
  uint8_t mode = g_noinit.pin_mode[pin];
  serial_link_write(mode == MODE_UNCLAIMED ? FIRMATA_MODE_INPUT : mode);
  uint8_t value = g_noinit.pin_value[pin];
  serial_link_write(value & 0x7F);
  if (value > 0x7F) serial_link_write(value >> 7);
  serial_link_write(FIRMATA_END_SYSEX);
}

void pins_poll(uint32_t now_ms) {
  for (uint8_t port = 0; port < TETHER_PORT_COUNT; port++) {
    if (!(g_noinit.report_digital & (1 << port))) continue;
    uint8_t bits = read_port_inputs(port);
    if (bits == last_port_value[port]) continue;
    last_port_value[port] = bits;
    send_port(port, bits);
  }
  if (now_ms - last_sample_ms < g_noinit.sampling_interval_ms) return;
  last_sample_ms = now_ms;
  for (uint8_t channel = 0; channel < TETHER_ANALOG_COUNT; channel++) {
    if (!(g_noinit.report_analog & (1 << channel))) continue;
    if (g_noinit.pin_mode[TETHER_FIRST_ANALOG_PIN + channel] != FIRMATA_MODE_ANALOG) continue;
    send_analog(channel);
  }
}
