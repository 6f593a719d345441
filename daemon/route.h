/* route.h - the static driver table (drivers/drivers.def) and the routes of the config: which driver
 * decodes which topics. A router is built whole from a config, with each used driver initialised from
 * its own driver.<name>.* settings, and swapped on reload. Loop thread only. */
#ifndef CP_ROUTE_H
#define CP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "citypulse/cp_driver.h"
#include "config.h"

/* Drivers compiled in, by index (stable for the life of the process: used to index counters). */
size_t cp_driver_count(void);
const struct cp_driver *cp_driver_at(size_t i);
/* Index of the named driver, or -1. */
int cp_driver_index(const char *name);
bool cp_driver_known(const char *name);

struct cp_route_entry {
        char *filter;
        int driver; /* index */
        void *state;
};

struct cp_router {
        struct cp_route_entry *routes;
        size_t n;
        void **states; /* per driver index: the state from init(), shared by its routes */
        bool *inited;
};

/* Builds a router from c. Driver init errors are reported as FILE:LINE of the first setting or route
 * naming the driver. */
int cp_router_build(const struct cp_config *c, struct cp_router **ret, struct cp_config_errors *errs);
void cp_router_free(struct cp_router *r);
/* The first route (in file order) whose filter matches topic, or NULL. */
const struct cp_route_entry *cp_router_match(const struct cp_router *r, const char *topic);

#endif
