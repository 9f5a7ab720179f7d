/* Floating-point control state across switches: shared by a thread's greenlets, unless one
 * is made with greenlet_new_own_fp. The state is changed with fesetround, as C code does. */
#include <fenv.h>

#include "check.h"

/* Sets the rounding mode it is given, reports the one it sees after the next switch back,
 * then the one it sees at the end. */
static void *set_and_report(void *arg, void *user_data) {
    (void)user_data;
    fesetround((int)PTR2INT(arg));
    greenlet_t *main_greenlet = greenlet_main();
    void *ignored;
    greenlet_status_t status = greenlet_switch(main_greenlet, NULL, &ignored);
    greenlet_release(main_greenlet);
    if (status != GREENLET_OK) {
        return greenlet_propagate();
    }
    return INT2PTR(fegetround());
}

static void greenlets_share_the_threads_state_by_default(void) {
    greenlet_t *g;
    CHECK(fegetround() == FE_TONEAREST);
    CHECK_STATUS(greenlet_new(&g, set_and_report, NULL, NULL, 0), GREENLET_OK);
    void *result;
    CHECK_STATUS(greenlet_switch(g, INT2PTR(FE_UPWARD), &result), GREENLET_OK);
    CHECK(fegetround() == FE_UPWARD); /* the greenlet's change is the thread's */
    fesetround(FE_DOWNWARD);
    CHECK_STATUS(greenlet_switch(g, NULL, &result), GREENLET_OK);
    CHECK(PTR2INT(result) == FE_DOWNWARD); /* main's change reached the greenlet */
    CHECK_STATUS(greenlet_release(g), GREENLET_OK);
    fesetround(FE_TONEAREST);
}

static void an_own_state_stays_in_its_greenlet(void) {
    greenlet_t *g;
    CHECK(fegetround() == FE_TONEAREST);
    CHECK_STATUS(greenlet_new_own_fp(&g, set_and_report, NULL, NULL, 0), GREENLET_OK);
    void *result;
    CHECK_STATUS(greenlet_switch(g, INT2PTR(FE_UPWARD), &result), GREENLET_OK);
    CHECK(fegetround() == FE_TONEAREST); /* the greenlet's change stayed in it */
    fesetround(FE_DOWNWARD);
    CHECK_STATUS(greenlet_switch(g, NULL, &result), GREENLET_OK);
    CHECK(PTR2INT(result) == FE_UPWARD); /* main's change did not reach it */
    CHECK(fegetround() == FE_DOWNWARD);  /* main got its own back when it finished */
    CHECK_STATUS(greenlet_release(g), GREENLET_OK);
    fesetround(FE_TONEAREST);
}

int main(void) {
    RUN(greenlets_share_the_threads_state_by_default);
    RUN(an_own_state_stays_in_its_greenlet);
    return check_summary();
}
