/* republish.h - retained live open-data records over MQTT; see republish.c. */
#ifndef CP_REPUBLISH_H
#define CP_REPUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cp_daemon;

struct cp_republish {
        struct cp_daemon *d;
        uv_timer_t timer;
        uint64_t *fac, *sen, *dist; /* hash of the last record sent, by registry index; 0: none */
        size_t n_fac, n_sen, n_dist;
        uint64_t *pfac, *psen, *pdist; /* the same for the portal push */
        size_t n_pfac, n_psen, n_pdist;
        uint64_t *spot_key; /* per registry sensor: a spot's status and observation time last handed over */
        size_t n_spot_key;
        uint64_t reg_gen, preg_gen;
        bool was_connected;
        uint64_t published;
};

int cp_republish_start(struct cp_republish *rp, struct cp_daemon *d);
/* Closes the timer (the loop finishes the close) and frees the state. */
void cp_republish_stop(struct cp_republish *rp);

#endif
