// Checksums: CRC-8/SMBUS for keepalive frames, CRC-16/CCITT-FALSE for the no-init block.
#pragma once
#include <stdint.h>

uint8_t crc8_update(uint8_t crc, uint8_t byte);           // poly 0x07, init 0x00
uint16_t crc16_update(uint16_t crc, uint8_t byte);        // poly 0x1021, init 0xFFFF
uint16_t crc16_block(const void *data, uint16_t length);
