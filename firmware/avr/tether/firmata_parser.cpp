#include "firmata_parser.h"
#include "firmata_constants.h"

// Number of data bytes that follow a command byte; 0xFF = not a command we
// parse (its data bytes are then dropped as stray).
static uint8_t data_length(uint8_t command) {
  if (command < 0xF0) {
    switch (command & 0xF0) {
      case FIRMATA_DIGITAL_MESSAGE:
      case FIRMATA_ANALOG_MESSAGE:
        return 2;
      case FIRMATA_REPORT_ANALOG:
      case FIRMATA_REPORT_DIGITAL:
        return 1;
      default:
        return 0xFF;
    }
  }
  switch (command) {
    case FIRMATA_SET_PIN_MODE:
    case FIRMATA_SET_DIGITAL_PIN_VALUE:
      return 2;
    case FIRMATA_REPORT_VERSION:
    case FIRMATA_SYSTEM_RESET:
      return 0;
    default:
      return 0xFF;
  }
}

void firmata_parser_init(FirmataParser *p) {
  p->command = 0;
  p->expected = 0xFF;
  p->received = 0;
  p->in_sysex = false;
  p->sysex_overflow = false;
  p->sysex_length = 0;
}

FirmataEvent firmata_parser_feed(FirmataParser *p, uint8_t byte) {
  if (byte & 0x80) {
    if (p->in_sysex && byte == FIRMATA_END_SYSEX) {
      p->in_sysex = false;
      p->expected = 0xFF;
      if (p->sysex_overflow || p->sysex_length == 0) return FIRMATA_EVENT_NONE;
      return FIRMATA_EVENT_SYSEX;
    }
    // Any other command byte, even inside a sysex, restarts the parser.
    p->in_sysex = false;
    p->received = 0;
    if (byte == FIRMATA_START_SYSEX) {
      p->in_sysex = true;
      p->sysex_overflow = false;
      p->sysex_length = 0;
      p->expected = 0xFF;
      return FIRMATA_EVENT_NONE;
    }
    p->command = byte;
    p->expected = data_length(byte);
    if (p->expected == 0) {
      p->expected = 0xFF;  // complete already; later data bytes are stray
      return FIRMATA_EVENT_COMMAND;
    }
    return FIRMATA_EVENT_NONE;
  }

  if (p->in_sysex) {
    if (p->sysex_length < FIRMATA_SYSEX_MAX) {
      p->sysex[p->sysex_length++] = byte;
    } else {
      p->sysex_overflow = true;
    }
    return FIRMATA_EVENT_NONE;
  }
  if (p->expected == 0xFF) return FIRMATA_EVENT_NONE;  // stray data byte
  p->data[p->received++] = byte;
  if (p->received < p->expected) return FIRMATA_EVENT_NONE;
  p->received = 0;
  p->expected = 0xFF;  // no running status: the next message needs its command byte
  return FIRMATA_EVENT_COMMAND;
}
