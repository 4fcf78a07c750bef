// Byte-level Firmata parser. It never blocks and cannot be wedged: every
// command byte (0x80-0xFF) abandons whatever was in progress and starts afresh.
#pragma once
#include <stdint.h>

#define FIRMATA_SYSEX_MAX 64  // body bytes between F0 and F7, sysex id included

enum FirmataEvent : uint8_t {
  FIRMATA_EVENT_NONE = 0,
  FIRMATA_EVENT_COMMAND,  // command/data0/data1 are valid
  FIRMATA_EVENT_SYSEX,    // sysex[0..sysex_length) is valid (sysex_length >= 1)
};

struct FirmataParser {
  uint8_t command;        // the command byte, channel bits included
  uint8_t data[2];
  uint8_t expected;       // data bytes the current command needs
  uint8_t received;
  bool in_sysex;
  bool sysex_overflow;    // frame grew past FIRMATA_SYSEX_MAX: drop it at F7
  uint8_t sysex_length;
  uint8_t sysex[FIRMATA_SYSEX_MAX];
};

void firmata_parser_init(FirmataParser *p);
// Feeds one byte; returns an event when a complete message has been parsed.
FirmataEvent firmata_parser_feed(FirmataParser *p, uint8_t byte);
