/* Many greenlets created and finished: every handle comes back, and (under valgrind) every
 * byte. Each case also checks this thread's handle count, in check_run. */
#include "check.h"

#define MANY 3000

static void *finish_at_once(void *arg, void *user_data) {
    (void)user_data;
    return arg;
}

static void *suspend_then_finish(void *arg, void *user_data) {
    (void)user_data;
    greenlet_t *me = greenlet_current();
    greenlet_t *parent;
    greenlet_parent(me, &parent);
    greenlet_release(me);
    void *back = NULL;
    greenlet_status_t status = greenlet_switch(parent, arg, &back);
    greenlet_release(parent);
    if (status != GREENLET_OK) {
        return greenlet_propagate();
    }
    return back;
}

static void many_greenlets_finish_and_free_everything(void) {
    for (long i = 0; i < MANY; i++) {
        greenlet_t *g;
        CHECK_STATUS(greenlet_new(&g, finish_at_once, NULL, NULL, 0), GREENLET_OK);
        void *value;
        CHECK_STATUS(greenlet_switch(g, INT2PTR(i), &value), GREENLET_OK);
        CHECK(PTR2INT(value) == i);
        CHECK_STATUS(greenlet_release(g), GREENLET_OK);
    }
}

static void unstarted_suspended_and_dead_greenlets_are_all_freed(void) {
    for (long i = 0; i < MANY; i++) {
        greenlet_t *g;
        CHECK_STATUS(greenlet_new(&g, suspend_then_finish, NULL, NULL, 512 * 1024),
                     GREENLET_OK);
        switch (i % 3) {
        case 0: /* never started */
            break;
        case 1: /* suspended: killed when released */
            CHECK_STATUS(greenlet_switch(g, INT2PTR(i), NULL), GREENLET_OK);
            break;
        default: /* finished */
            CHECK_STATUS(greenlet_switch(g, INT2PTR(i), NULL), GREENLET_OK);
            CHECK_STATUS(greenlet_switch(g, INT2PTR(i), NULL), GREENLET_OK);
            CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
        }
        CHECK_STATUS(greenlet_release(g), GREENLET_OK);
    }
}

static void handle_references_balance(void) {
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, finish_at_once, NULL, NULL, 0), GREENLET_OK);
    size_t handles = greenlet_handle_count();
    for (int i = 0; i < 100; i++) {
        CHECK_STATUS(greenlet_retain(g), GREENLET_OK);
        greenlet_t *main_handle = greenlet_main();
        greenlet_t *parent;
        CHECK_STATUS(greenlet_parent(g, &parent), GREENLET_OK);
        CHECK(parent == main_handle);
        greenlet_release(parent);
        greenlet_release(main_handle);
    }
    for (int i = 0; i < 100; i++) {
        CHECK_STATUS(greenlet_release(g), GREENLET_OK);
    }
    CHECK(greenlet_handle_count() == handles);
    CHECK(greenlet_state(g) == GREENLET_STATE_UNSTARTED);
    CHECK_STATUS(greenlet_release(g), GREENLET_OK);
}

static void thrown_errors_and_pending_state_are_freed(void) {
    static int payload;
    for (int i = 0; i < MANY / 10; i++) {
        greenlet_t *g;
        CHECK_STATUS(greenlet_new(&g, suspend_then_finish, NULL, NULL, 0), GREENLET_OK);
        CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_OK);
        CHECK_STATUS(greenlet_throw(g, &payload, "a message to free", NULL), GREENLET_THROWN);
        CHECK_STATUS(greenlet_release(g), GREENLET_OK);
    }
}

int main(void) {
    RUN(many_greenlets_finish_and_free_everything);
    RUN(unstarted_suspended_and_dead_greenlets_are_all_freed);
    RUN(handle_references_balance);
    RUN(thrown_errors_and_pending_state_are_freed);
    return check_summary();
}
