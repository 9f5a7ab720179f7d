/* Throwing into greenlets running C code, dying with an error, and kills. */
#include "check.h"

static int token; /* its address is the error payload */

/* Recurses `depth` C frames deep, switches to main at the bottom, and passes the status
 * back up, counting the frames it unwinds through. */
static greenlet_status_t dive(int depth, int *unwound) {
    greenlet_status_t status;
    if (depth == 0) {
        greenlet_t *home = greenlet_main();
        status = greenlet_switch(home, INT2PTR(1), NULL);
        greenlet_release(home);
    } else {
        status = dive(depth - 1, unwound);
    }
    (*unwound)++;
    return status;
}

struct diver {
    int unwound;
    int handle; /* handle a thrown error instead of dying of it */
    greenlet_status_t seen;
    void *payload_seen;
    char message_seen[32];
};

static void *diver_entry(void *arg, void *user_data) {
    (void)arg;
    struct diver *d = user_data;
    d->seen = dive(50, &d->unwound);
    d->payload_seen = greenlet_error_payload();
    strncpy(d->message_seen, greenlet_error_message(), sizeof d->message_seen - 1);
    if (d->seen != GREENLET_OK && !d->handle) {
        return greenlet_propagate();
    }
    return INT2PTR(7);
}

static void a_throw_unwinds_c_frames_and_reaches_the_thrower(void) {
    struct diver d = {0};
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, diver_entry, &d, NULL, 0), GREENLET_OK);
    void *value;
    CHECK_STATUS(greenlet_switch(g, NULL, &value), GREENLET_OK);
    CHECK(PTR2INT(value) == 1 && d.unwound == 0);
    /* g does not handle it: it dies and the error comes back to its parent, us. */
    CHECK_STATUS(greenlet_throw(g, &token, "boom", &value), GREENLET_THROWN);
    CHECK(value == NULL);
    CHECK(d.seen == GREENLET_THROWN);
    CHECK(d.unwound == 51);
    CHECK(d.payload_seen == &token && strcmp(d.message_seen, "boom") == 0);
    CHECK(greenlet_error_payload() == &token);
    CHECK(strcmp(greenlet_error_message(), "boom") == 0);
    CHECK(strcmp(greenlet_last_error(), "boom") == 0);
    CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
    greenlet_release(g);
}

static void a_greenlet_may_handle_a_thrown_error_and_go_on(void) {
    struct diver d = {0};
    d.handle = 1;
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, diver_entry, &d, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_OK);
    void *value;
    CHECK_STATUS(greenlet_throw(g, &token, NULL, &value), GREENLET_OK);
    CHECK(PTR2INT(value) == 7);
    CHECK(d.seen == GREENLET_THROWN && d.payload_seen == &token);
    CHECK(strcmp(d.message_seen, "") == 0);
    greenlet_release(g);
}

static int entry_calls;

static void *count_calls(void *arg, void *user_data) {
    (void)user_data;
    entry_calls++;
    return arg;
}

static void throwing_into_an_unstarted_greenlet_never_runs_it(void) {
    greenlet_t *g;
    entry_calls = 0;
    CHECK_STATUS(greenlet_new(&g, count_calls, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_throw(g, &token, "early", NULL), GREENLET_THROWN);
    CHECK(greenlet_error_payload() == &token);
    CHECK(entry_calls == 0);
    CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
    greenlet_release(g);

    CHECK_STATUS(greenlet_new(&g, count_calls, NULL, NULL, 0), GREENLET_OK);
    void *value = INT2PTR(1);
    CHECK_STATUS(greenlet_kill(g, &value), GREENLET_OK);
    CHECK(value == NULL && entry_calls == 0);
    CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
    greenlet_release(g);
}

static void *fail_entry(void *arg, void *user_data) {
    (void)user_data;
    if (arg != NULL) {
        return greenlet_fail(arg, "could not do it");
    }
    return INT2PTR(5);
}

static void greenlet_fail_makes_the_parent_switch_fail(void) {
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, fail_entry, NULL, NULL, 0), GREENLET_OK);
    void *value = INT2PTR(1);
    CHECK_STATUS(greenlet_switch(g, &token, &value), GREENLET_THROWN);
    CHECK(value == NULL);
    CHECK(greenlet_error_payload() == &token);
    CHECK(strcmp(greenlet_error_message(), "could not do it") == 0);
    CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
    greenlet_release(g);
}

/* A parent that starts a failing child: the child's error arrives at the parent's switch
 * (not the thrower's), and the parent turns it into a value. */
static void *parent_entry(void *arg, void *user_data) {
    (void)arg;
    (void)user_data;
    greenlet_t *child;
    if (greenlet_new(&child, fail_entry, NULL, NULL, 0) != GREENLET_OK) {
        return greenlet_propagate();
    }
    greenlet_status_t status = greenlet_switch(child, &token, NULL);
    greenlet_release(child);
    if (status == GREENLET_THROWN) {
        return greenlet_error_payload(); /* handled: return the payload as a value */
    }
    return NULL;
}

static void a_dying_child_delivers_its_error_to_its_parent(void) {
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, parent_entry, NULL, NULL, 0), GREENLET_OK);
    void *value;
    CHECK_STATUS(greenlet_switch(g, NULL, &value), GREENLET_OK);
    CHECK(value == &token);
    greenlet_release(g);
}

struct stubborn {
    int exits_seen;
};

static void *stubborn_entry(void *arg, void *user_data) {
    (void)arg;
    struct stubborn *s = user_data;
    greenlet_t *home = greenlet_main();
    void *result = NULL;
    for (;;) {
        greenlet_status_t status = greenlet_switch(home, INT2PTR(s->exits_seen), NULL);
        if (status == GREENLET_EXIT) {
            s->exits_seen++;
            if (s->exits_seen == 2) {
                result = greenlet_propagate();
                break;
            }
        }
    }
    greenlet_release(home);
    return result;
}

static void a_kill_can_be_ignored_and_then_obeyed(void) {
    struct stubborn s = {0};
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, stubborn_entry, &s, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_OK);
    void *value;
    /* Ignored: what it switches back is the result of the kill. */
    CHECK_STATUS(greenlet_kill(g, &value), GREENLET_OK);
    CHECK(PTR2INT(value) == 1);
    CHECK(greenlet_state(g) == GREENLET_STATE_SUSPENDED);
    CHECK_STATUS(greenlet_kill(g, &value), GREENLET_OK);
    CHECK(value == NULL);
    CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
    greenlet_release(g);
}

static void *propagate_nothing(void *arg, void *user_data) {
    (void)arg;
    (void)user_data;
    greenlet_switch(NULL, NULL, NULL); /* refused: GREENLET_ERR_NULL_ARGUMENT */
    return greenlet_propagate();       /* nothing pending: dies of the last error */
}

static void propagating_with_nothing_pending_uses_the_last_error(void) {
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, propagate_nothing, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_THROWN);
    CHECK(greenlet_error_payload() == NULL);
    CHECK(strstr(greenlet_error_message(), "NULL") != NULL);
    greenlet_release(g);
}

static void throwing_into_the_current_greenlet_returns_at_once(void) {
    greenlet_t *me = greenlet_current();
    CHECK_STATUS(greenlet_throw(me, &token, "self", NULL), GREENLET_THROWN);
    CHECK(greenlet_error_payload() == &token);
    void *value;
    CHECK_STATUS(greenlet_switch(me, INT2PTR(3), &value), GREENLET_OK);
    CHECK(PTR2INT(value) == 3);
    greenlet_release(me);
}

int main(void) {
    RUN(a_throw_unwinds_c_frames_and_reaches_the_thrower);
    RUN(a_greenlet_may_handle_a_thrown_error_and_go_on);
    RUN(throwing_into_an_unstarted_greenlet_never_runs_it);
    RUN(greenlet_fail_makes_the_parent_switch_fail);
    RUN(a_dying_child_delivers_its_error_to_its_parent);
    RUN(a_kill_can_be_ignored_and_then_obeyed);
    RUN(propagating_with_nothing_pending_uses_the_last_error);
    RUN(throwing_into_the_current_greenlet_returns_at_once);
    return check_summary();
}
