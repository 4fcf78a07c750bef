// The Firmata serial link (57600 baud on the Uno's USB serial).
#pragma once
#include <stdint.h>

#ifndef SERIAL_LINK_BAUD
#define SERIAL_LINK_BAUD 57600  // as StandardFirmata; build.sh --baud makes variants
#endif

void serial_link_begin();
int serial_link_read();  // -1 when nothing is waiting
// Blocks while the TX buffer is full, kicking the watchdog meanwhile: a long
// response (e.g. the capability list) drains at a known rate and must not
// trip a short watchdog period.
void serial_link_write(uint8_t byte);
void serial_link_write_septets(uint16_t value);  // value & 0x7F, (value >> 7) & 0x7F
void serial_link_flush();  // returns once the last byte has left the UART
