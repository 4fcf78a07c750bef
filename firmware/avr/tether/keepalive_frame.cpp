#include "keepalive_frame.h"
#include <avr/pgmspace.h>
#include "crc.h"
#include "firmata_constants.h"
#include "serial_link.h"

static uint8_t tx_crc;

static void put(uint8_t septet) {
  tx_crc = crc8_update(tx_crc, septet);
  serial_link_write(septet);
}

void frame_begin(uint8_t type) {
  serial_link_write(FIRMATA_START_SYSEX);
  serial_link_write(FIRMATA_SYSEX_TETHER);
  tx_crc = 0;
  put(KEEPALIVE_VERSION);
  put(type);
}

void frame_u7(uint8_t value) { put(value & 0x7F); }

void frame_u14(uint16_t value) {
  put(value & 0x7F);
  put((value >> 7) & 0x7F);
}

void frame_u32(uint32_t value) {
  for (uint8_t i = 0; i < 5; i++) {
    put(value & 0x7F);
    value >>= 7;
  }
}

void frame_byte(uint8_t value) {
  put(value & 0x7F);
  put(value >> 7);
}

void frame_str_P(const char *text) {
  uint8_t length = strlen_P(text);
  put(length);
  while (length--) put(pgm_read_byte(text++));
}

void frame_end() {
  uint8_t crc = tx_crc;
  serial_link_write(crc & 0x7F);
  serial_link_write(crc >> 7);
  serial_link_write(FIRMATA_END_SYSEX);
}

void frame_reader_init(FrameReader *r, const uint8_t *payload, uint8_t length) {
  r->next = payload;
  r->remaining = length;
  r->out_of_range = false;
}

static uint8_t take(FrameReader *r) {
  if (r->remaining == 0) return 0;  // callers check lengths first; stay safe anyway
  r->remaining--;
  return *r->next++;
}

uint8_t frame_read_u7(FrameReader *r) { return take(r); }

uint16_t frame_read_u14(FrameReader *r) {
  uint16_t low = take(r);
  return low | ((uint16_t)take(r) << 7);
}

uint32_t frame_read_u32(FrameReader *r) {
  uint32_t value = 0;
  for (uint8_t i = 0; i < 5; i++) {
    uint8_t septet = take(r);
    if (i == 4 && septet > 0x0F) r->out_of_range = true;
    value |= (uint32_t)septet << (7 * i);
  }
  return value;
}

uint8_t frame_read_byte(FrameReader *r) {
  uint8_t low = take(r);
  uint8_t high = take(r);
  if (high > 0x01) r->out_of_range = true;
  return low | (uint8_t)(high << 7);
}

uint8_t frame_crc(const uint8_t *data, uint8_t length) {
  uint8_t crc = 0;
  while (length--) crc = crc8_update(crc, *data++);
  return crc;
}
