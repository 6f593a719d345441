/* fuzz_config.c - libFuzzer harness over the config parser: any bytes give a config or errors that
 * name FILE:LINE, never a crash or a leak. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cp_config_errors errs = {0};
        struct cp_config *c = NULL;
        int r = cp_config_parse("f.conf", (const char *)data, size, cp_driver_known, &c, &errs);

        if ((r == 0) != (c != NULL) || (r < 0 && r != -ENOMEM && errs.n == 0))
                abort();
        for (size_t i = 0; i < errs.n; i++)
                if (strncmp(errs.msg[i], "f.conf:", 7) != 0)
                        abort();
        cp_config_errors_done(&errs);
        cp_config_free(c);
        return 0;
}
