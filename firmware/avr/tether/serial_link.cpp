#include "serial_link.h"
#include <Arduino.h>
#include "watchdog.h"

void serial_link_begin() { Serial.begin(SERIAL_LINK_BAUD); }

int serial_link_read() { return Serial.read(); }

void serial_link_write(uint8_t byte) {
  while (Serial.availableForWrite() == 0) watchdog_kick();
  Serial.write(byte);
}

void serial_link_write_septets(uint16_t value) {
  serial_link_write(value & 0x7F);
  serial_link_write((value >> 7) & 0x7F);
}

void serial_link_flush() {
  while (Serial.availableForWrite() < SERIAL_TX_BUFFER_SIZE - 1) watchdog_kick();
  Serial.flush();
}
