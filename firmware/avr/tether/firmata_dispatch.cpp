#include "firmata_dispatch.h"
#include <avr/pgmspace.h>
#include "board.h"
#include "firmata_constants.h"
#include "firmata_pins.h"
#include "keepalive.h"
#include "serial_link.h"

static const char firmware_name[] PROGMEM = TETHER_FW_NAME;

void firmata_send_version() {
  serial_link_write(FIRMATA_REPORT_VERSION);
  serial_link_write(FIRMATA_PROTOCOL_MAJOR);
  serial_link_write(FIRMATA_PROTOCOL_MINOR);
}

void firmata_send_firmware_name() {
  serial_link_write(FIRMATA_START_SYSEX);
  serial_link_write(FIRMATA_REPORT_FIRMWARE);
  serial_link_write(TETHER_FW_MAJOR);
  serial_link_write(TETHER_FW_MINOR);
  for (const char *p = firmware_name; pgm_read_byte(p); p++) serial_link_write_septets(pgm_read_byte(p));
  serial_link_write(FIRMATA_END_SYSEX);
}

void firmata_dispatch_command(uint8_t command, const uint8_t *data) {
  uint16_t value14 = data[0] | ((uint16_t)data[1] << 7);
  uint8_t channel = command & 0x0F;
  switch (command & 0xF0) {
    case FIRMATA_DIGITAL_MESSAGE:
      pins_write_port(channel, (uint8_t)value14);
      return;
    case FIRMATA_ANALOG_MESSAGE:
      pins_write_analog(channel, value14);
      return;
    case FIRMATA_REPORT_ANALOG:
      pins_report_analog(channel, data[0] != 0);
      return;
    case FIRMATA_REPORT_DIGITAL:
      pins_report_digital(channel, data[0] != 0);
      return;
  }
  switch (command) {
    case FIRMATA_SET_PIN_MODE:
      pins_set_mode(data[0], data[1]);
      break;
    case FIRMATA_SET_DIGITAL_PIN_VALUE:
      pins_write_digital(data[0], data[1]);
      break;
    case FIRMATA_REPORT_VERSION:
      firmata_send_version();
      break;
    case FIRMATA_SYSTEM_RESET:
      pins_reset_to_defaults();  // state registers are kept
      break;
  }
}

void firmata_dispatch_sysex(const uint8_t *body, uint8_t length) {
  switch (body[0]) {
    case FIRMATA_SYSEX_TETHER:
#if !TETHER_PLAIN_FIRMATA
      keepalive_handle_frame(body, length);
#endif
      break;
    case FIRMATA_REPORT_FIRMWARE:
      firmata_send_firmware_name();
      break;
    case FIRMATA_CAPABILITY_QUERY:
      pins_send_capabilities();
      break;
    case FIRMATA_ANALOG_MAPPING_QUERY:
      pins_send_analog_mapping();
      break;
    case FIRMATA_PIN_STATE_QUERY:
      if (length >= 2) pins_send_pin_state(body[1]);
      break;
    case FIRMATA_EXTENDED_ANALOG:
      if (length >= 3) {
        // pin, then the value in up to three septets (more cannot fit a PWM duty).
        uint16_t value = 0;
        for (uint8_t i = 2; i < length && i < 5; i++) value |= (uint16_t)body[i] << (7 * (i - 2));
        if (length > 5) value = 0xFFFF;  // clamps to full duty
        pins_write_analog(body[1], value);
      }
      break;
    case FIRMATA_SAMPLING_INTERVAL:
      if (length >= 3) pins_set_sampling_interval(body[1] | ((uint16_t)body[2] << 7));
      break;
  }
}
