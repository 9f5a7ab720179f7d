/* Generators: a greenlet that hands values one at a time to whoever switches to it. */
#include "check.h"

/* Yields the Fibonacci numbers below `arg`, as pointers to a local variable of its own
 * frame: they stay valid while the generator is suspended. */
struct fib_state {
    int cleaned_up;
};

static void *fibonacci(void *arg, void *user_data) {
    struct fib_state *state = user_data;
    greenlet_t *me = greenlet_current();
    greenlet_t *consumer = NULL;
    greenlet_parent(me, &consumer);
    greenlet_release(me); /* holding our own handle while suspended would keep us alive */
    long limit = PTR2INT(arg), a = 0, b = 1;
    void *result = NULL;
    while (a < limit) {
        if (greenlet_switch(consumer, &a, NULL) != GREENLET_OK) {
            result = greenlet_propagate();
            break;
        }
        long next = a + b;
        a = b;
        b = next;
    }
    state->cleaned_up = 1;
    greenlet_release(consumer);
    return result;
}

static void generator_yields_values_until_it_finishes(void) {
    struct fib_state state = {0};
    greenlet_t *gen;
    CHECK_STATUS(greenlet_new(&gen, fibonacci, &state, NULL, 0), GREENLET_OK);
    long expected[] = {0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89};
    size_t n = 0;
    void *value;
    greenlet_status_t status = greenlet_switch(gen, INT2PTR(100), &value);
    while (status == GREENLET_OK && greenlet_state(gen) != GREENLET_STATE_DEAD) {
        CHECK(greenlet_state(gen) == GREENLET_STATE_SUSPENDED);
        CHECK(n < sizeof expected / sizeof expected[0] && *(long *)value == expected[n]);
        n++;
        status = greenlet_switch(gen, NULL, &value);
    }
    CHECK_STATUS(status, GREENLET_OK);
    CHECK(value == NULL);
    CHECK(n == sizeof expected / sizeof expected[0]);
    CHECK(state.cleaned_up);
    greenlet_release(gen);
}

static void releasing_a_suspended_generator_kills_it(void) {
    struct fib_state state = {0};
    greenlet_t *gen;
    CHECK_STATUS(greenlet_new(&gen, fibonacci, &state, NULL, 0), GREENLET_OK);
    void *value;
    CHECK_STATUS(greenlet_switch(gen, INT2PTR(1000), &value), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(gen, NULL, &value), GREENLET_OK);
    CHECK(*(long *)value == 1);
    CHECK(!state.cleaned_up);
    /* The last reference: the generator gets GREENLET_EXIT at its switch and returns. */
    CHECK_STATUS(greenlet_release(gen), GREENLET_OK);
    CHECK(state.cleaned_up);
}

/* A generator consuming another one: squares of what `inner` yields. */
static void *squares(void *arg, void *user_data) {
    (void)arg;
    greenlet_t *inner = user_data;
    greenlet_t *home = greenlet_main();
    void *value;
    greenlet_status_t status = greenlet_switch(inner, INT2PTR(50), &value);
    while (status == GREENLET_OK && greenlet_state(inner) != GREENLET_STATE_DEAD) {
        long square = *(long *)value * *(long *)value;
        if (greenlet_switch(home, &square, NULL) != GREENLET_OK) {
            greenlet_release(home);
            return greenlet_propagate();
        }
        status = greenlet_switch(inner, NULL, &value);
    }
    greenlet_release(home);
    return INT2PTR(-1);
}

static void generators_nest(void) {
    struct fib_state state = {0};
    greenlet_t *inner, *outer;
    CHECK_STATUS(greenlet_new(&inner, fibonacci, &state, NULL, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_new(&outer, squares, inner, NULL, 0), GREENLET_OK);
    /* The inner generator yields to its parent: make that the outer one. */
    CHECK_STATUS(greenlet_set_parent(inner, outer), GREENLET_OK);
    long sum = 0;
    void *value;
    greenlet_status_t status = greenlet_switch(outer, NULL, &value);
    while (status == GREENLET_OK && greenlet_state(outer) != GREENLET_STATE_DEAD) {
        sum += *(long *)value;
        status = greenlet_switch(outer, NULL, &value);
    }
    CHECK_STATUS(status, GREENLET_OK);
    CHECK(PTR2INT(value) == -1);
    /* Squares of 0 1 1 2 3 5 8 13 21 34. */
    CHECK(sum == 0 + 1 + 1 + 4 + 9 + 25 + 64 + 169 + 441 + 1156);
    CHECK(greenlet_state(inner) == GREENLET_STATE_DEAD);
    CHECK(state.cleaned_up);
    greenlet_release(outer);
    greenlet_release(inner);
}

int main(void) {
    RUN(generator_yields_values_until_it_finishes);
    RUN(releasing_a_suspended_generator_kills_it);
    RUN(generators_nest);
    return check_summary();
}
