/* fuzz_relay.c - lines of a controller's entity-change event file as the
 * relay reads them (relay_parse_line): any bytes, NUL included. */
#include <stddef.h>
#include <stdint.h>

#include "consistency/relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct relay_event ev;
    relay_parse_line((const char *)data, size, &ev);
    return 0;
}
