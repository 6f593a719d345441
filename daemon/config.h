/* config.h - the config file (CONTRACT section 2): one schema table, strict parsing, FILE:LINE errors.
 * A config is immutable once loaded; reload builds a new one and swaps it only when valid. */
#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "citypulse/cp_driver.h"

struct cp_route {
        char *filter; /* MQTT topic filter */
        char *driver;
        int line;
};

struct cp_driver_kv {
        char *driver;
        struct cp_conf_kv kv; /* key and value owned */
        int line;
};

struct cp_config {
        char *file;

        char *mqtt_host;
        int64_t mqtt_port;
        char *mqtt_client_id;
        int64_t mqtt_qos;
        bool mqtt_clean_session;
        int64_t mqtt_keepalive_ms;
        char *mqtt_username;
        char *mqtt_password_file;
        char *mqtt_tls_cafile;
        char *mqtt_tls_certfile;
        char *mqtt_tls_keyfile;
        char *mqtt_shared_group;
        int64_t mqtt_reconnect_max_ms;
        int64_t mqtt_max_payload;

        struct cp_route *routes;
        size_t n_routes;
        char **http_listen;
        size_t n_http_listen;
        char *http_admin_token_file;
        int64_t http_ttl_ms;
        int64_t http_max_connections;

        char *data_dir;
        char *registry_facilities;
        char *registry_sensors;
        int64_t registry_max_unregistered;

        int64_t live_stale_after_ms;
        int64_t live_full_threshold;
        char *agg_timezone;
        int64_t agg_allowed_lateness_ms;
        int64_t agg_max_future_skew_ms;

        int64_t store_retention_readings_ms;
        int64_t store_retention_rejects_ms;
        int64_t store_retention_buckets_ms[4]; /* 1m 15m hourly daily */
        int64_t rejects_max_payload;

        char *rrd_cached_address;
        int64_t rrd_step_ms;

        char *publish_prefix;
        char *ods_push_url;
        char *ods_push_pushkey_file;
        int64_t log_level;
        int64_t log_summary_interval_ms;

        struct cp_driver_kv *driver_kv;
        size_t n_driver_kv;
};

/* Where a problem was found; messages are "FILE:LINE: what is wrong". */
struct cp_config_errors {
        char **msg;
        size_t n;
};

/* Parses `path`. Returns 0 and a new config in *ret (free with cp_config_free), or -EINVAL with every
 * problem found listed in errs (-ENOENT/-EACCES when the file cannot be read, also listed). Routes naming
 * unknown drivers are reported when `known_driver` is given. */
int cp_config_load(const char *path, bool (*known_driver)(const char *name), struct cp_config **ret,
                   struct cp_config_errors *errs);
/* Parses config text held in memory; `name` is used in messages. */
int cp_config_parse(const char *name, const char *text, size_t len, bool (*known_driver)(const char *name),
                    struct cp_config **ret, struct cp_config_errors *errs);
/* A config with every default (no routes). */
struct cp_config *cp_config_new_default(void);
void cp_config_free(struct cp_config *c);
void cp_config_errors_done(struct cp_config_errors *errs);
/* Appends "FILE:LINE: message" (line 0 omits the line). */
void cp_config_error(struct cp_config_errors *errs, const char *file, int line, const char *fmt, ...)
        CP_PRINTF(4, 5);

/* Names of keys whose change needs a restart, comma separated into buf; returns the count. */
size_t cp_config_restart_keys(const struct cp_config *old, const struct cp_config *new, char *buf, size_t len);
/* Gives `new` the old values of every key that needs a restart (they are swapped, so each config still
 * owns what it frees). */
void cp_config_keep_restart_keys(struct cp_config *old, struct cp_config *new);
/* Driver section view: valid while c lives. `kv` storage is allocated into *ret_kv (caller frees). */
int cp_config_driver_section(const struct cp_config *c, const char *driver, struct cp_conf_section *ret,
                             struct cp_conf_kv **ret_kv);

/* The schema, for the test that checks every key is documented in config/citypulse.conf. */
size_t cp_config_schema_size(void);
const char *cp_config_schema_key(size_t i);
const char *cp_config_schema_default(size_t i);

/* Reads a secret (password, token, push key) from a file named by the config: its first line, without
 * the line end, into buf. Returns 0, or a negative errno with "PATH: what failed" in err. Never logs. */
int cp_read_secret(const char *path, char *buf, size_t len, char *err, size_t errlen);

/* Duration "500ms 30s 5m 2h 7d" (a bare number is an error) and size "512 64k 16m 1g". */
int cp_parse_duration_ms(const char *s, int64_t *ret);
int cp_parse_size(const char *s, int64_t *ret);

#endif
