// The Firmata serial link (57600 baud on the Uno's USB serial).
#pragma once
#include <stdint.h>

#ifndef SERIAL_LINK_BAUD
#define SERIAL_LINK_BAUD 57600  // as StandardFirmata; build.sh --baud makes variants
#endif

// A full TX buffer that does not drain a single byte for this long means the transmitter has
// stalled (at 57600 baud a byte leaves every 174 us).
#define SERIAL_LINK_STALL_US 20000UL

void serial_link_begin();
int serial_link_read();  // -1 when nothing is waiting
// Waits while the TX buffer is full, at most SERIAL_LINK_STALL_US, and never kicks the
// watchdog: only the main loop does. A wait that runs out marks the link stalled and the byte
// is dropped; so are later bytes until the buffer has drained again.
void serial_link_write(uint8_t byte);
void serial_link_write_septets(uint16_t value);  // value & 0x7F, (value >> 7) & 0x7F
// Returns once the last byte has left the UART, or the link stalled.
void serial_link_flush();
// The transmitter stalled and has not drained since (the main loop then stops kicking the
// watchdog, so a stuck UART ends in a reset).
bool serial_link_stalled();
// Bytes handed to the UART since boot (wraps); the main loop bounds its output per pass with it.
uint16_t serial_link_written();
