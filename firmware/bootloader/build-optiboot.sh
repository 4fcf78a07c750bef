#!/usr/bin/env bash
# Builds Optiboot, the Arduino Uno's bootloader (STK500v1 at 115200 baud), from the source
# Debian ships in arduino-core-avr, for the ATmega328P at 16 MHz, with LED_START_FLASHES=0.
# The hex Debian ships next to that source is 532 bytes and runs past the 512-byte boot
# section (0x7E00-0x7FFF); this build is 496 bytes of code plus the 2-byte version word.
#
#   ./build-optiboot.sh            build into optiboot_atmega328.hex (next to this script)
#   ./build-optiboot.sh FILE       build into FILE
#   ./build-optiboot.sh --check    rebuild in a temp dir; fail if the committed hex is stale
#   ./build-optiboot.sh --mcu atmega328 FILE
#                                  build for another part of the same layout (the
#                                  ATmega328 non-P reports signature 1E 95 14: tests use
#                                  it to get a board that says it is not a 328P)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMMITTED="$HERE/optiboot_atmega328.hex"
ARDUINO_AVR="${ARDUINO_AVR:-/usr/share/arduino/hardware/arduino/avr}"
SRC_DIR="$ARDUINO_AVR/bootloaders/optiboot"

BOOT_START=$((0x7E00))  # BOOTSZ=11 (256 words), as the Uno's fuses set it
BOOT_END=$((0x8000))
VERSION_AT=$((0x7FFE))  # Optiboot's version word sits in the last two bytes

die() { echo "build-optiboot.sh: $*" >&2; exit 1; }

MODE=build
MCU=atmega328p
OUT_HEX="$COMMITTED"
while [ $# -gt 0 ]; do
  case "$1" in
    --check) MODE=check; shift ;;
    --mcu) [ -n "${2:-}" ] || die "--mcu needs a part name (atmega328p or atmega328)"; MCU="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (use --check, --mcu PART, FILE or nothing)" ;;
    *) OUT_HEX="$1"; shift ;;
  esac
done
case "$MCU" in
  atmega328p|atmega328) ;;
  *) die "--mcu $MCU: only atmega328p and atmega328 share the Uno's 0x7E00 boot section" ;;
esac
[ "$MODE" = check ] && [ "$MCU" != atmega328p ] && die "--check compares the committed atmega328p build only"

for tool in avr-gcc avr-objcopy; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found. Install the AVR toolchain: 'apt-get install gcc-avr avr-libc binutils-avr'."
done
for f in optiboot.c boot.h pin_defs.h stk500.h; do
  [ -f "$SRC_DIR/$f" ] ||
    die "Optiboot source not found ($SRC_DIR/$f missing). Install 'arduino-core-avr' or set ARDUINO_AVR."
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The flags of Optiboot's own Makefile (target atmega328), with LED_START_FLASHES=0.
# Compiled from inside the source directory so that only relative names are seen.
(
  cd "$SRC_DIR"
  avr-gcc -g -Wall -Wno-unused-function -Os -fno-inline-small-functions -fno-split-wide-types -mshort-calls \
    -mmcu="$MCU" -DF_CPU=16000000L -DBAUD_RATE=115200 -DLED_START_FLASHES=0 \
    -Wl,--section-start=.text=0x7e00 -Wl,--section-start=.version=0x7ffe \
    -Wl,--relax -Wl,--gc-sections -nostartfiles -nostdlib \
    -o "$WORK/optiboot.elf" optiboot.c
)
avr-objcopy -j .text -j .data -j .version --set-section-flags .version=alloc,load \
  -O ihex "$WORK/optiboot.elf" "$WORK/optiboot.hex"

# Where the data records land: all of it inside the boot section, the code below the version word.
# (mawk, Debian's default awk, has no strtonum: hex digits are converted by hand.)
read -r lowest highest code_end < <(awk -v version_at="$VERSION_AT" '
  function hex(s,   i, v) { v = 0; for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789ABCDEF", toupper(substr(s, i, 1))) - 1; return v }
  BEGIN { lo = -1; hi = -1; code = 0 }
  /^:/ {
    n = hex(substr($0, 2, 2)); a = hex(substr($0, 4, 4)); t = substr($0, 8, 2)
    if (t == "02" || t == "04") { print "segment"; exit }
    if (t != "00") next
    if (lo < 0 || a < lo) lo = a
    if (a + n > hi) hi = a + n
    if (a < version_at && a + n > code) code = a + n
  }
  END { print lo, hi, code }' "$WORK/optiboot.hex") || die "cannot read the addresses of $WORK/optiboot.hex"
[ "$lowest" != segment ] || die "unexpected segment record in the Optiboot hex"
[ "$lowest" -ge "$BOOT_START" ] && [ "$highest" -le "$BOOT_END" ] ||
  die "$(printf 'Optiboot spans 0x%04X-0x%04X, outside the boot section 0x%04X-0x%04X' "$lowest" $((highest - 1)) $BOOT_START $((BOOT_END - 1)))"
[ "$code_end" -le "$VERSION_AT" ] ||
  die "$(printf 'Optiboot code ends at 0x%04X and overlaps its version word at 0x%04X' "$code_end" $VERSION_AT)"
code_bytes=$((code_end - BOOT_START))

if [ "$MODE" = check ]; then
  [ -f "$COMMITTED" ] || die "no committed $(basename "$COMMITTED") to check; run $0"
  cmp -s "$WORK/optiboot.hex" "$COMMITTED" ||
    die "$(basename "$COMMITTED") differs from a fresh build: run firmware/bootloader/build-optiboot.sh and commit it"
  echo "$(basename "$COMMITTED") is up to date ($code_bytes bytes of code in the 512-byte boot section)"
  exit 0
fi

cp "$WORK/optiboot.hex" "$OUT_HEX"
echo "wrote $OUT_HEX: Optiboot for $MCU, $code_bytes bytes of code + version word, inside 0x7E00-0x7FFF"
