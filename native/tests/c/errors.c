/* Misuse is reported, never undefined: NULL arguments, stale handles, handles of other
 * threads (alive or exited), dead greenlets, parent cycles, switching inside a trace hook. */
#include <pthread.h>
#include <stdlib.h>

#include "check.h"

static void *identity(void *arg, void *user_data) {
    (void)user_data;
    return arg;
}

/* Switches `arg` to main once; returns what main sends back. Sets *user_data (an int, if
 * given) when it ends, however it ends. */
static void *wait_once(void *arg, void *user_data) {
    greenlet_t *home = greenlet_main();
    void *back = NULL;
    greenlet_status_t status = greenlet_switch(home, arg, &back);
    greenlet_release(home);
    int *cleaned = user_data;
    if (cleaned != NULL) {
        *cleaned = 1;
    }
    return status == GREENLET_OK ? back : greenlet_propagate();
}

static void null_arguments_are_refused(void) {
    greenlet_t *g = NULL;
    CHECK_STATUS(greenlet_new(NULL, identity, NULL, NULL, 0), GREENLET_ERR_NULL_ARGUMENT);
    CHECK_STATUS(greenlet_new(&g, NULL, NULL, NULL, 0), GREENLET_ERR_NULL_ARGUMENT);
    CHECK(g == NULL);
    CHECK_STATUS(greenlet_switch(NULL, NULL, NULL), GREENLET_ERR_NULL_ARGUMENT);
    CHECK_STATUS(greenlet_parent(NULL, &g), GREENLET_ERR_NULL_ARGUMENT);
    CHECK(greenlet_state(NULL) == GREENLET_STATE_INVALID);
    CHECK(greenlet_is_main(NULL) == -1);
    CHECK_STATUS(greenlet_release(NULL), GREENLET_OK);
    CHECK(strlen(greenlet_last_error()) > 0);
}

static void a_released_handle_is_detected(void) {
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, identity, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_release(g), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_ERR_STALE_HANDLE);
    CHECK_STATUS(greenlet_kill(g, NULL), GREENLET_ERR_STALE_HANDLE);
    CHECK_STATUS(greenlet_retain(g), GREENLET_ERR_STALE_HANDLE);
    CHECK_STATUS(greenlet_release(g), GREENLET_ERR_STALE_HANDLE);
    CHECK(greenlet_state(g) == GREENLET_STATE_INVALID);
    CHECK(strstr(greenlet_last_error(), "released") != NULL);
    /* Still detected after many other handles came and went (fewer than the quarantine). */
    for (int i = 0; i < GREENLET_QUARANTINE / 2; i++) {
        greenlet_t *other;
        CHECK_STATUS(greenlet_new(&other, identity, NULL, NULL, 0), GREENLET_OK);
        CHECK(other != g);
        greenlet_release(other);
    }
    CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_ERR_STALE_HANDLE);
}

/* --- Threads ------------------------------------------------------------------------- */

struct foreign_use {
    greenlet_t *g, *own_parent;
    int statuses[9];
    greenlet_state_t state;
    int is_main;
};

static void *use_from_another_thread(void *arg) {
    struct foreign_use *u = arg;
    greenlet_t *parent = NULL, *mine;
    u->statuses[0] = greenlet_switch(u->g, NULL, NULL);
    u->statuses[1] = greenlet_throw(u->g, NULL, "x", NULL);
    u->statuses[2] = greenlet_kill(u->g, NULL);
    u->statuses[3] = greenlet_retain(u->g);
    u->statuses[4] = greenlet_release(u->g);
    u->statuses[5] = greenlet_parent(u->g, &parent);
    u->statuses[6] = greenlet_set_parent(u->g, u->own_parent);
    /* A greenlet of this thread cannot get a parent of the other thread either. */
    greenlet_new(&mine, identity, NULL, NULL, 0);
    u->statuses[7] = greenlet_set_parent(mine, u->own_parent);
    u->statuses[8] = greenlet_new(&parent, identity, NULL, u->g, 0);
    greenlet_release(mine);
    u->state = greenlet_state(u->g);
    u->is_main = greenlet_is_main(u->g);
    return NULL;
}

static void handles_of_another_thread_are_refused(void) {
    struct foreign_use u = {0};
    CHECK_STATUS(greenlet_new(&u.g, wait_once, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(u.g, NULL, NULL), GREENLET_OK); /* suspended */
    u.own_parent = greenlet_main();
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, use_from_another_thread, &u) == 0);
    pthread_join(thread, NULL);
    for (int i = 0; i < 9; i++) {
        CHECK_STATUS(u.statuses[i], GREENLET_ERR_WRONG_THREAD);
    }
    CHECK(u.state == GREENLET_STATE_INVALID);
    CHECK(u.is_main == -1);
    /* Nothing changed here. */
    CHECK(greenlet_state(u.g) == GREENLET_STATE_SUSPENDED);
    CHECK_STATUS(greenlet_switch(u.g, INT2PTR(4), NULL), GREENLET_OK);
    CHECK(greenlet_state(u.g) == GREENLET_STATE_DEAD);
    greenlet_release(u.g);
    greenlet_release(u.own_parent);
}

struct leftover {
    greenlet_t *unstarted, *suspended;
    int cleaned;
};

static void *leave_handles_behind(void *arg) {
    struct leftover *l = arg;
    greenlet_new(&l->unstarted, identity, NULL, NULL, 0);
    greenlet_new(&l->suspended, wait_once, &l->cleaned, NULL, 0);
    greenlet_switch(l->suspended, NULL, NULL);
    return NULL; /* exits without releasing them */
}

static void handles_of_an_exited_thread_report_it(void) {
    struct leftover l = {0};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, leave_handles_behind, &l) == 0);
    pthread_join(thread, NULL);
    CHECK_STATUS(greenlet_switch(l.unstarted, NULL, NULL), GREENLET_ERR_THREAD_EXITED);
    CHECK_STATUS(greenlet_release(l.suspended), GREENLET_ERR_THREAD_EXITED);
    CHECK(greenlet_state(l.suspended) == GREENLET_STATE_INVALID);
    /* The suspended one was killed as its thread exited: it ran its cleanup. */
    CHECK(l.cleaned == 1);
}

/* Greenlets of several threads run at the same time, each thread its own. */
static void *ping_locally(void *arg) {
    (void)arg;
    long total = 0;
    for (int i = 0; i < 200; i++) {
        greenlet_t *g;
        if (greenlet_new(&g, wait_once, NULL, NULL, 0) != GREENLET_OK) {
            return NULL;
        }
        void *v;
        greenlet_switch(g, INT2PTR(1), &v);
        total += PTR2INT(v);
        greenlet_switch(g, INT2PTR(2), &v);
        total += PTR2INT(v);
        greenlet_release(g);
    }
    return INT2PTR(total + (long)greenlet_handle_count());
}

static void threads_use_their_own_greenlets_concurrently(void) {
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_create(&threads[i], NULL, ping_locally, NULL) == 0);
    }
    for (int i = 0; i < 4; i++) {
        void *total;
        pthread_join(threads[i], &total);
        CHECK(PTR2INT(total) == 200 * 3);
    }
}

/* --- Dead greenlets and parents --------------------------------------------------------- */

static void a_dead_greenlet_forwards_to_its_parent(void) {
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, identity, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, INT2PTR(1), NULL), GREENLET_OK);
    CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
    /* Its parent is main, the caller: the value comes straight back. */
    void *value;
    CHECK_STATUS(greenlet_switch(g, INT2PTR(9), &value), GREENLET_OK);
    CHECK(PTR2INT(value) == 9);
    static int payload;
    CHECK_STATUS(greenlet_throw(g, &payload, "to the parent", NULL), GREENLET_THROWN);
    CHECK(greenlet_error_payload() == &payload);
    CHECK_STATUS(greenlet_kill(g, &value), GREENLET_OK);
    CHECK(value == NULL);
    /* Still a valid handle: queries and reparenting work. */
    greenlet_t *home = greenlet_main(), *parent;
    CHECK_STATUS(greenlet_set_parent(g, home), GREENLET_OK);
    CHECK_STATUS(greenlet_parent(g, &parent), GREENLET_OK);
    CHECK(parent == home);
    greenlet_release(parent);
    greenlet_release(home);
    greenlet_release(g);
}

static void parent_cycles_and_main_reparenting_are_refused(void) {
    greenlet_t *a, *b, *home = greenlet_main(), *parent = INT2PTR(1);
    CHECK_STATUS(greenlet_new(&a, identity, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_new(&b, identity, NULL, a, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_set_parent(a, b), GREENLET_ERR_CYCLIC_PARENT);
    CHECK_STATUS(greenlet_set_parent(a, a), GREENLET_ERR_CYCLIC_PARENT);
    CHECK_STATUS(greenlet_set_parent(home, a), GREENLET_ERR_CANNOT_REPARENT_MAIN);
    CHECK_STATUS(greenlet_parent(home, &parent), GREENLET_OK);
    CHECK(parent == NULL);
    CHECK(greenlet_is_main(home) == 1 && greenlet_is_main(a) == 0);
    /* b finishes into a, which starts with b's result. */
    void *value;
    CHECK_STATUS(greenlet_switch(b, INT2PTR(5), &value), GREENLET_OK);
    CHECK(PTR2INT(value) == 5);
    CHECK(greenlet_state(a) == GREENLET_STATE_DEAD);
    greenlet_release(a);
    greenlet_release(b);
    greenlet_release(home);
}

/* --- Trace hooks -------------------------------------------------------------------- */

struct trace_log {
    int switches, throws;
    int refused[4];
    greenlet_t *victim; /* released inside the hook */
    int *victim_cleaned;
    int victim_cleaned_in_hook;
};

static void hook(greenlet_event_t event, greenlet_t *origin, greenlet_t *target, void *data) {
    struct trace_log *log = data;
    if (event == GREENLET_EVENT_SWITCH) {
        log->switches++;
    } else {
        log->throws++;
    }
    log->refused[0] = greenlet_switch(origin, NULL, NULL);
    log->refused[1] = greenlet_throw(origin, NULL, "no", NULL);
    log->refused[2] = greenlet_kill(origin, NULL);
    log->refused[3] = greenlet_set_parent(origin, target);
    if (log->victim != NULL) {
        greenlet_release(log->victim); /* the last reference: killed after we return */
        log->victim = NULL;
        log->victim_cleaned_in_hook = *log->victim_cleaned;
    }
}

static void switching_inside_a_trace_hook_is_refused(void) {
    struct trace_log log = {0};
    CHECK_STATUS(greenlet_settrace(hook, &log), GREENLET_OK);
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, wait_once, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_OK);  /* main -> g -> main */
    CHECK_STATUS(greenlet_throw(g, NULL, "x", NULL), GREENLET_THROWN); /* -> g, dies -> main */
    CHECK_STATUS(greenlet_settrace(NULL, NULL), GREENLET_OK);
    CHECK(log.switches == 2 && log.throws == 2);
    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(log.refused[i], GREENLET_ERR_IN_TRACE_HOOK);
    }
    greenlet_release(g);
}

static void a_greenlet_released_inside_a_hook_is_killed_after_it(void) {
    int cleaned = 0;
    struct trace_log log = {0};
    greenlet_t *victim, *g;
    CHECK_STATUS(greenlet_new(&victim, wait_once, &cleaned, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(victim, NULL, NULL), GREENLET_OK);
    log.victim = victim; /* our reference goes to the hook */
    log.victim_cleaned = &cleaned;
    log.victim_cleaned_in_hook = -1;
    CHECK_STATUS(greenlet_settrace(hook, &log), GREENLET_OK);
    CHECK_STATUS(greenlet_new(&g, identity, NULL, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, NULL, NULL), GREENLET_OK);
    CHECK_STATUS(greenlet_settrace(NULL, NULL), GREENLET_OK);
    CHECK(log.victim_cleaned_in_hook == 0);
    CHECK(cleaned == 1);
    greenlet_release(g);
}

static void the_backend_is_the_expected_one(void) {
    const char *expected = getenv("GREENLET_EXPECT_BACKEND");
    printf("  backend: %s\n", greenlet_backend_name());
    CHECK(expected == NULL || strcmp(expected, greenlet_backend_name()) == 0);
    CHECK(strcmp(greenlet_status_name(GREENLET_ERR_STALE_HANDLE),
                 "GREENLET_ERR_STALE_HANDLE") == 0);
}

int main(void) {
    RUN(null_arguments_are_refused);
    RUN(a_released_handle_is_detected);
    RUN(handles_of_another_thread_are_refused);
    RUN(handles_of_an_exited_thread_report_it);
    RUN(threads_use_their_own_greenlets_concurrently);
    RUN(a_dead_greenlet_forwards_to_its_parent);
    RUN(parent_cycles_and_main_reparenting_are_refused);
    RUN(switching_inside_a_trace_hook_is_refused);
    RUN(a_greenlet_released_inside_a_hook_is_killed_after_it);
    RUN(the_backend_is_the_expected_one);
    return check_summary();
}
