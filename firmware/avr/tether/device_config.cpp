#include "device_config.h"
#include <avr/eeprom.h>
#include <stddef.h>
#include "watchdog.h"

#define CONFIG_MAGIC 0x7E7A
#define CONFIG_LAYOUT 1

struct EepromImage {
  uint16_t magic;
  uint8_t layout;
  uint32_t boot_id;
  DeviceConfig config;
};

static EepromImage EEMEM eeprom_image;  // at EEPROM address 0
DeviceConfig g_config;
static uint32_t boot_id;

static void load_factory_defaults() {
  g_config.watchdog_ms = 2000;
  g_config.policy = POLICY_STAY;
  g_config.host_timeout_ms = 0;
  g_config.sleep_ms = 8000;
  g_config.awake_ms = 1000;
}

// A byte write takes up to 3.4 ms (only changed bytes are written); the whole
// configuration (15 bytes) fits well within WATCHDOG_MIN_MS, so the watchdog is
// not kicked here: only the main loop kicks it.
static void store_bytes(void *eeprom_dst, const void *src, uint8_t length) {
  uint8_t *dst = (uint8_t *)eeprom_dst;
  const uint8_t *p = (const uint8_t *)src;
  while (length--) {
    eeprom_update_byte(dst++, *p++);
    eeprom_busy_wait();
  }
}

void device_config_begin() {
  bool valid = eeprom_read_word(&eeprom_image.magic) == CONFIG_MAGIC &&
               eeprom_read_byte(&eeprom_image.layout) == CONFIG_LAYOUT;
  if (valid) {
    eeprom_read_block(&g_config, &eeprom_image.config, sizeof g_config);
    boot_id = eeprom_read_dword(&eeprom_image.boot_id);
    // Guard against a half-written or hand-edited image.
    g_config.watchdog_ms = watchdog_round_ms(g_config.watchdog_ms);
    if (!watchdog_ms_allowed(g_config.watchdog_ms)) g_config.watchdog_ms = WATCHDOG_MIN_MS;
    if (g_config.policy > POLICY_RESET) g_config.policy = POLICY_STAY;
  } else {
    load_factory_defaults();
    boot_id = 0;
  }
  boot_id++;
  store_bytes(&eeprom_image.boot_id, &boot_id, sizeof boot_id);
  if (!valid) {
    device_config_store();
    uint8_t layout = CONFIG_LAYOUT;
    store_bytes(&eeprom_image.layout, &layout, 1);
    uint16_t magic = CONFIG_MAGIC;
    store_bytes(&eeprom_image.magic, &magic, sizeof magic);  // last: marks the image complete
  }
}

uint32_t device_config_boot_id() { return boot_id; }

void device_config_store() { store_bytes(&eeprom_image.config, &g_config, sizeof g_config); }
