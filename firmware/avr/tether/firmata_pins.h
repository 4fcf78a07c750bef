// Firmata pin model: modes, writes, input reporting and the pin queries.
// The live configuration is the no-init block, so it survives a soft reset.
#pragma once
#include <stdint.h>

#define FIRMATA_DEFAULT_SAMPLING_MS 19

void pins_reset_to_defaults();  // D2-D13 high-Z (unclaimed), A0-A5 ANALOG, reporting off
void pins_restore();            // re-applies the no-init block to the hardware

void pins_set_mode(uint8_t pin, uint8_t mode);
void pins_write_port(uint8_t port, uint8_t bits);  // DIGITAL_MESSAGE
void pins_write_digital(uint8_t pin, uint8_t value);  // SET_DIGITAL_PIN_VALUE
void pins_write_analog(uint8_t pin, uint16_t value);  // PWM duty
void pins_report_digital(uint8_t port, bool enable);
void pins_report_analog(uint8_t channel, bool enable);
void pins_set_sampling_interval(uint16_t ms);

void pins_send_capabilities();
void pins_send_analog_mapping();
void pins_send_pin_state(uint8_t pin);

// Sends DIGITAL_MESSAGEs for changed inputs and, every sampling interval,
// ANALOG_MESSAGEs for reported channels.
void pins_poll(uint32_t now_ms);
