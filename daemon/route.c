/* route.c - see route.h. The driver table is generated from drivers/drivers.def (nginx's static module
 * list): adding a driver is one file and one line. */
#include "route.h"

#include <errno.h>
#include <mosquitto.h>
#include <stdlib.h>
#include <string.h>

#include "citypulse/cp_common.h"

#define CP_DRIVER(n) extern const struct cp_driver cp_driver_##n;
#include "drivers.def"
#undef CP_DRIVER

static const struct cp_driver *const drivers[] = {
#define CP_DRIVER(n) &cp_driver_##n,
#include "drivers.def"
#undef CP_DRIVER
};

size_t cp_driver_count(void)
{
        return CP_ARRAY_LEN(drivers);
}

const struct cp_driver *cp_driver_at(size_t i)
{
        return i < CP_ARRAY_LEN(drivers) ? drivers[i] : NULL;
}

int cp_driver_index(const char *name)
{
        for (size_t i = 0; i < CP_ARRAY_LEN(drivers); i++)
                if (strcmp(drivers[i]->name, name) == 0)
                        return (int)i;
        return -1;
}

bool cp_driver_known(const char *name)
{
        return cp_driver_index(name) >= 0;
}

void cp_router_free(struct cp_router *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++)
                free(r->routes[i].filter);
        free(r->routes);
        for (size_t i = 0; r->states && i < CP_ARRAY_LEN(drivers); i++)
                if (r->inited[i] && drivers[i]->free)
                        drivers[i]->free(r->states[i]);
        free(r->states);
        free(r->inited);
        free(r);
}

/* The line to blame for a driver's settings: its first driver.<name>.* line, else its first route. */
static int driver_line(const struct cp_config *c, const char *name)
{
        for (size_t i = 0; i < c->n_driver_kv; i++)
                if (strcmp(c->driver_kv[i].driver, name) == 0)
                        return c->driver_kv[i].line;
        for (size_t i = 0; i < c->n_routes; i++)
                if (strcmp(c->routes[i].driver, name) == 0)
                        return c->routes[i].line;
        return 0;
}

/* Inits a driver with its section; a driver without its own `timezone` gets agg.timezone. */
static int init_driver(struct cp_router *r, const struct cp_config *c, size_t i, struct cp_config_errors *errs)
{
        const struct cp_driver *d = drivers[i];
        struct cp_conf_section sec;
        struct cp_conf_kv *kv = NULL, *more;
        char err[256] = "";
        int ret;

        if (d->abi != CP_DRIVER_ABI) {
                cp_config_error(errs, c->file, 0, "driver %s: ABI %u, expected %u", d->name, d->abi, CP_DRIVER_ABI);
                return -EINVAL;
        }
        if (!d->init)
                return 0;
        if ((ret = cp_config_driver_section(c, d->name, &sec, &kv)) < 0)
                return ret;
        if (!cp_conf_get(&sec, "timezone")) {
                more = realloc(kv, (sec.n + 1) * sizeof(*more));
                if (!more) {
                        free(kv);
                        return -ENOMEM;
                }
                kv = more;
                kv[sec.n].key = "timezone";
                kv[sec.n].value = c->agg_timezone;
                sec.kv = kv;
                sec.n++;
        }
        ret = d->init(&sec, &r->states[i], err, sizeof(err));
        free(kv);
        if (ret < 0) {
                cp_config_error(errs, c->file, driver_line(c, d->name), "driver %s: %s", d->name,
                                *err ? err : "initialisation failed");
                return ret;
        }
        r->inited[i] = true;
        return 0;
}

int cp_router_build(const struct cp_config *c, struct cp_router **ret, struct cp_config_errors *errs)
{
        struct cp_router *r = calloc(1, sizeof(*r));
        int bad = 0;

        if (!r)
                return -ENOMEM;
        r->states = calloc(CP_ARRAY_LEN(drivers), sizeof(*r->states));
        r->inited = calloc(CP_ARRAY_LEN(drivers), sizeof(*r->inited));
        r->routes = calloc(c->n_routes ? c->n_routes : 1, sizeof(*r->routes));
        if (!r->states || !r->inited || !r->routes) {
                cp_router_free(r);
                return -ENOMEM;
        }
        /* Every driver with settings is initialised, routed or not, so its settings are checked too. */
        for (size_t i = 0; i < CP_ARRAY_LEN(drivers); i++) {
                bool used = false;
                for (size_t k = 0; k < c->n_routes && !used; k++)
                        used = strcmp(c->routes[k].driver, drivers[i]->name) == 0;
                for (size_t k = 0; k < c->n_driver_kv && !used; k++)
                        used = strcmp(c->driver_kv[k].driver, drivers[i]->name) == 0;
                if (used && init_driver(r, c, i, errs) < 0)
                        bad++;
        }
        for (size_t k = 0; k < c->n_routes; k++) {
                int di = cp_driver_index(c->routes[k].driver);
                if (di < 0) {
                        cp_config_error(errs, c->file, c->routes[k].line, "route: unknown driver '%s'",
                                        c->routes[k].driver);
                        bad++;
                        continue;
                }
                r->routes[r->n].filter = strdup(c->routes[k].filter);
                if (!r->routes[r->n].filter) {
                        cp_router_free(r);
                        return -ENOMEM;
                }
                r->routes[r->n].driver = di;
                r->routes[r->n].state = r->states[di];
                r->n++;
        }
        if (bad) {
                cp_router_free(r);
                return -EINVAL;
        }
        *ret = r;
        return 0;
}

const struct cp_route_entry *cp_router_match(const struct cp_router *r, const char *topic)
{
        for (size_t i = 0; i < r->n; i++) {
                bool match = false;
                if (mosquitto_topic_matches_sub(r->routes[i].filter, topic, &match) == MOSQ_ERR_SUCCESS && match)
                        return &r->routes[i];
        }
        return NULL;
}
