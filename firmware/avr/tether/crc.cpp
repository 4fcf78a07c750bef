#include "crc.h"

// Bitwise rather than table-driven: frames are short, and 256 bytes of table
// would cost more flash than the loop costs time.
uint8_t crc8_update(uint8_t crc, uint8_t byte) {
  crc ^= byte;
  for (uint8_t i = 0; i < 8; i++) {
    crc = (crc & 0x80) ? (uint8_t)((crc << 1) ^ 0x07) : (uint8_t)(crc << 1);
  }
  return crc;
}

uint16_t crc16_update(uint16_t crc, uint8_t byte) {
  crc ^= (uint16_t)byte << 8;
  for (uint8_t i = 0; i < 8; i++) {
    crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

uint16_t crc16_block(const void *data, uint16_t length) {
  const uint8_t *p = (const uint8_t *)data;
  uint16_t crc = 0xFFFF;
  while (length--) crc = crc16_update(crc, *p++);
  return crc;
}
