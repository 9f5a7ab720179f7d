/* Switching away from inside a qsort comparator: libc frames stay suspended on a greenlet's
 * stack, and main answers the comparisons of two sorts running at the same time. */
#include <stdlib.h>

#include "check.h"

struct comparison {
    int a, b;
};

struct sorter {
    int *data;
    size_t n;
    int cancelled; /* set once the sorter was killed: answer without asking any more */
};

static greenlet_t *asker_home; /* main, where comparisons are asked */
static _Thread_local struct sorter *running_sorter;

static int ask_main(const void *x, const void *y) {
    struct sorter *self = running_sorter;
    if (self->cancelled) {
        return 0;
    }
    struct comparison question = {*(const int *)x, *(const int *)y};
    void *answer;
    if (greenlet_switch(asker_home, &question, &answer) != GREENLET_OK) {
        self->cancelled = 1; /* qsort cannot be unwound: finish it quickly */
        return 0;
    }
    running_sorter = self; /* the other sorter ran meanwhile */
    return (int)PTR2INT(answer);
}

static void *sort_entry(void *arg, void *user_data) {
    (void)arg;
    struct sorter *s = user_data;
    running_sorter = s;
    qsort(s->data, s->n, sizeof(int), ask_main);
    if (s->cancelled) {
        return greenlet_propagate();
    }
    return s;
}

static int is_sorted(const int *data, size_t n) {
    for (size_t i = 1; i < n; i++) {
        if (data[i - 1] > data[i]) {
            return 0;
        }
    }
    return 1;
}

/* Answers one question (or takes the final result) from a sorter. */
static int answer(greenlet_t *g, void **question, int *asked) {
    if (greenlet_state(g) == GREENLET_STATE_DEAD) {
        return 0;
    }
    const struct comparison *q = *question;
    int cmp = (q->a > q->b) - (q->a < q->b);
    (*asked)++;
    CHECK_STATUS(greenlet_switch(g, INT2PTR(cmp), question), GREENLET_OK);
    return 1;
}

static void two_sorts_suspend_inside_qsort_and_finish(void) {
    int a[64], b[50];
    for (int i = 0; i < 64; i++) {
        a[i] = (i * 37) % 64;
    }
    for (int i = 0; i < 50; i++) {
        b[i] = 1000 - i * 3;
    }
    struct sorter sa = {a, 64, 0}, sb = {b, 50, 0};
    asker_home = greenlet_main();
    greenlet_t *ga, *gb;
    CHECK_STATUS(greenlet_new(&ga, sort_entry, &sa, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_new(&gb, sort_entry, &sb, NULL, 0), GREENLET_OK);
    void *qa, *qb;
    CHECK_STATUS(greenlet_switch(ga, NULL, &qa), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(gb, NULL, &qb), GREENLET_OK);
    /* Both are now suspended inside qsort. */
    CHECK(greenlet_state(ga) == GREENLET_STATE_SUSPENDED);
    CHECK(greenlet_state(gb) == GREENLET_STATE_SUSPENDED);
    int asked = 0;
    while (answer(ga, &qa, &asked) | answer(gb, &qb, &asked)) {
    }
    CHECK(qa == &sa && qb == &sb); /* what the entries returned */
    CHECK(is_sorted(a, 64) && is_sorted(b, 50));
    CHECK(asked > 64 + 50);
    greenlet_release(ga);
    greenlet_release(gb);
    greenlet_release(asker_home);
}

static void a_sort_killed_inside_qsort_finishes_and_dies(void) {
    int data[40];
    for (int i = 0; i < 40; i++) {
        data[i] = 40 - i;
    }
    struct sorter s = {data, 40, 0};
    asker_home = greenlet_main();
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, sort_entry, &s, NULL, 0), GREENLET_OK);
    void *q;
    int asked = 0;
    CHECK_STATUS(greenlet_switch(g, NULL, &q), GREENLET_OK);
    for (int i = 0; i < 5; i++) {
        answer(g, &q, &asked);
    }
    void *result = INT2PTR(1);
    CHECK_STATUS(greenlet_kill(g, &result), GREENLET_OK);
    CHECK(result == NULL);
    CHECK(s.cancelled);
    CHECK(greenlet_state(g) == GREENLET_STATE_DEAD);
    greenlet_release(g);
    greenlet_release(asker_home);
}

int main(void) {
    RUN(two_sorts_suspend_inside_qsort_and_finish);
    RUN(a_sort_killed_inside_qsort_finishes_and_dies);
    return check_summary();
}
