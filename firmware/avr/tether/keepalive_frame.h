// Wire encoding of keepalive frames: F0 0D VER TYPE payload CRC_LO CRC_HI F7,
// all body bytes 7-bit, CRC-8/SMBUS over VER TYPE payload.
#pragma once
#include <stdint.h>

#define KEEPALIVE_VERSION 0x01

// Writer: streams straight to the serial link, no frame buffer in RAM.
void frame_begin(uint8_t type);
void frame_u7(uint8_t value);
void frame_u14(uint16_t value);
void frame_u32(uint32_t value);
void frame_byte(uint8_t value);  // as two septets
void frame_str_P(const char *progmem_text);
void frame_end();

// Reader over a received payload.
struct FrameReader {
  const uint8_t *next;
  uint8_t remaining;
  bool out_of_range;  // a septet had bits above its field's width
};

void frame_reader_init(FrameReader *r, const uint8_t *payload, uint8_t length);
uint8_t frame_read_u7(FrameReader *r);
uint16_t frame_read_u14(FrameReader *r);
uint32_t frame_read_u32(FrameReader *r);
uint8_t frame_read_byte(FrameReader *r);

// CRC as it should appear on the wire for VER TYPE payload.
uint8_t frame_crc(const uint8_t *data, uint8_t length);
