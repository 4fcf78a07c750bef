#include "serial_link.h"
#include <Arduino.h>

static bool stalled;
static uint16_t written;

void serial_link_begin() { Serial.begin(SERIAL_LINK_BAUD); }

int serial_link_read() { return Serial.read(); }

static bool drained() { return Serial.availableForWrite() >= SERIAL_TX_BUFFER_SIZE - 1; }

// Waits until the TX buffer has room for `bytes`, at most SERIAL_LINK_STALL_US.
static bool wait_for_room(int bytes) {
  uint32_t start = micros();
  while (Serial.availableForWrite() < bytes) {
    if (micros() - start >= SERIAL_LINK_STALL_US) {
      stalled = true;
      return false;
    }
  }
  return true;
}

bool serial_link_stalled() {
  if (stalled && drained()) stalled = false;
  return stalled;
}

void serial_link_write(uint8_t byte) {
  if (serial_link_stalled() || !wait_for_room(1)) return;
  Serial.write(byte);
  written++;
}

void serial_link_write_septets(uint16_t value) {
  serial_link_write(value & 0x7F);
  serial_link_write((value >> 7) & 0x7F);
}

void serial_link_flush() {
  if (serial_link_stalled() || !wait_for_room(SERIAL_TX_BUFFER_SIZE - 1)) return;
  // The buffer is empty; the last bytes sit in UDR0 and the shift register: two byte times.
  delayMicroseconds((unsigned int)(2 * 10 * 1000000UL / SERIAL_LINK_BAUD) + 1);
}

uint16_t serial_link_written() { return written; }
