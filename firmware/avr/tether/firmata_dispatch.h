// Routes parsed Firmata messages to the pin model and the keepalive
// extension, and answers the version/firmware queries.
#pragma once
#include <stdint.h>

void firmata_send_version();
void firmata_send_firmware_name();
void firmata_dispatch_command(uint8_t command, const uint8_t *data);
void firmata_dispatch_sysex(const uint8_t *body, uint8_t length);
