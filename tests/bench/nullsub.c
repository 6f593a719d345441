/* nullsub.c - the baseline of the ingest benchmark: a subscriber that does nothing with messages but
 * count them, on the same broker, topic filter and QoS as citypulsed. Prints
 * "received N first_ms T0 last_ms T1" when N messages arrived or after --idle seconds of silence.
 * Usage: nullsub HOST PORT QOS FILTER COUNT [IDLE_S] */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long want, got;
static double first, last;

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
        (void)m;
        (void)ud;
        (void)msg;
        if (got++ == 0)
                first = now_ms();
        last = now_ms();
}

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
        const char *filter = ud;

        if (rc == 0)
                mosquitto_subscribe(m, NULL, filter, atoi(getenv("NULLSUB_QOS")));
}

int main(int argc, char **argv)
{
        struct mosquitto *m;
        double idle;

        if (argc < 6) {
                fprintf(stderr, "usage: nullsub HOST PORT QOS FILTER COUNT [IDLE_S]\n");
                return 2;
        }
        want = atol(argv[5]);
        idle = argc > 6 ? atof(argv[6]) * 1000 : 5000;
        setenv("NULLSUB_QOS", argv[3], 1);
        mosquitto_lib_init();
        m = mosquitto_new("cp-bench-nullsub", true, argv[4]);
        mosquitto_connect_callback_set(m, on_connect);
        mosquitto_message_callback_set(m, on_message);
        if (mosquitto_connect(m, argv[1], atoi(argv[2]), 30) != MOSQ_ERR_SUCCESS) {
                fprintf(stderr, "nullsub: cannot connect\n");
                return 1;
        }
        double start = now_ms();
        while (got < want) {
                if (mosquitto_loop(m, 100, 1000) != MOSQ_ERR_SUCCESS)
                        break;
                if ((got && now_ms() - last > idle) || (!got && now_ms() - start > 60000))
                        break;
        }
        printf("received %ld first_ms %.1f last_ms %.1f\n", got, first, last);
        fflush(stdout);
        mosquitto_destroy(m);
        mosquitto_lib_cleanup();
        return 0;
}
