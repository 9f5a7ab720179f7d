/* Ping-pong: two greenlets switching to each other directly, many times. */
#include "check.h"

#define ROUNDS 20000

struct players {
    greenlet_t *ping, *pong;
    long pongs;
};

static void *ping(void *arg, void *user_data) {
    struct players *p = user_data;
    long n = PTR2INT(arg);
    for (long i = 0; i < ROUNDS; i++) {
        void *back;
        if (greenlet_switch(p->pong, INT2PTR(n), &back) != GREENLET_OK) {
            return greenlet_propagate();
        }
        if (PTR2INT(back) != n + 1) {
            return greenlet_fail(NULL, "pong answered the wrong number");
        }
        n = PTR2INT(back) + 1;
    }
    return INT2PTR(n); /* to main, the parent */
}

static void *pong(void *arg, void *user_data) {
    struct players *p = user_data;
    void *n = arg;
    for (;;) {
        p->pongs++;
        if (greenlet_switch(p->ping, INT2PTR(PTR2INT(n) + 1), &n) != GREENLET_OK) {
            return greenlet_propagate(); /* killed when main releases it */
        }
    }
}

static void ping_and_pong_switch_to_each_other(void) {
    struct players p = {0};
    CHECK_STATUS(greenlet_new(&p.ping, ping, &p, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_new(&p.pong, pong, &p, NULL, 0), GREENLET_OK);
    void *result;
    CHECK_STATUS(greenlet_switch(p.ping, INT2PTR(0), &result), GREENLET_OK);
    CHECK(PTR2INT(result) == 2L * ROUNDS);
    CHECK(p.pongs == ROUNDS);
    CHECK(greenlet_state(p.ping) == GREENLET_STATE_DEAD);
    CHECK(greenlet_state(p.pong) == GREENLET_STATE_SUSPENDED);
    greenlet_release(p.ping);
    /* Killed on release: its switch returns GREENLET_EXIT and it propagates it. */
    greenlet_status_t status = greenlet_release(p.pong);
    CHECK_STATUS(status, GREENLET_OK);
}

/* A relay: each runner adds its number and passes the value to the next. */
struct relay {
    greenlet_t *runners[3];
    int laps;
};

static void *runner(void *arg, void *user_data) {
    struct relay *r = user_data;
    greenlet_t *me = greenlet_current();
    int index = 0;
    while (r->runners[index] != me) {
        index++;
    }
    greenlet_release(me);
    void *value = arg;
    for (int lap = 0; lap < r->laps; lap++) {
        greenlet_t *next = r->runners[(index + 1) % 3];
        if (greenlet_switch(next, INT2PTR(PTR2INT(value) + index + 1), &value) != GREENLET_OK) {
            return greenlet_propagate();
        }
    }
    return value;
}

static void a_value_travels_round_three_greenlets(void) {
    struct relay r = {{NULL, NULL, NULL}, 100};
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(greenlet_new(&r.runners[i], runner, &r, NULL, 0), GREENLET_OK);
    }
    void *result;
    CHECK_STATUS(greenlet_switch(r.runners[0], INT2PTR(0), &result), GREENLET_OK);
    /* Each lap adds 1 + 2 + 3; runner 0 finishes after its 100th lap, into main. */
    CHECK(PTR2INT(result) == 6L * 100);
    for (int i = 0; i < 3; i++) {
        greenlet_release(r.runners[i]);
    }
}

int main(void) {
    RUN(ping_and_pong_switch_to_each_other);
    RUN(a_value_travels_round_three_greenlets);
    return check_summary();
}
